//! The preference-dataset export, `GET /api/v1/datasets/preferences`: JSON lines that
//! Hugging Face `datasets` loads and TRL's `DPOTrainer` reads as they are.
//!
//! - `format=trl`: `{prompt, chosen, rejected}` as text, plus metadata columns. The
//!   `prompt` is the round as the Space posed it to the chosen seat (task, role, the
//!   earlier answers shown), never an agent's meta-prompt: meta-prompts are their
//!   owners'. `prompt_sha256` hashes the exact prompt the policy saw (what a
//!   proof-of-learning pairs root commits to), and `policy_prompt` carries that exact
//!   prompt only where the agent's owner opted in (`public_prompt` on the agent).
//! - `format=trl-conversational`: `prompt` is a list of `{role, content}` messages (the
//!   user turn; with an opted-in agent, its system turn too), `chosen` and `rejected`
//!   one assistant message.
//!
//! `training_run=ID` narrows the export to the pairs one training run trained on; each
//! row then carries its `training_position`, and its prompts are the ones the run
//! trained the pair under: the run's own agent's view of the round (its role and, in
//! `policy_prompt` where opted in, its meta-prompt), for the chosen and the rejected
//! answer alike, and every row carries the `round_id` and
//! the `match_result_root` that a proof-of-learning record commits to, so a verifier
//! (`rlfc verify-pol --from URL`) can rebuild the record's roots from the export alone.
//!
//! Rows stream straight from the database a keyset page at a time, so memory stays
//! constant however many rows there are. Every row carries its `pair_id`; to resume an
//! interrupted download, pass the last complete row's `pair_id` as `after`.

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use futures_util::stream;
use serde::{Deserialize, Serialize};
use store::{ExportPair, PairFilter};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiQuery;
use crate::error::{Error, ErrorBody, Result};
use crate::state::AppState;

/// The header naming the cursor parameter a client resumes with.
pub const RESUME_HEADER: &str = "x-resume-cursor";

/// The export's filters and options.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// Only this Space (slug).
    pub space: Option<String>,
    /// Only pairs where this agent wrote the chosen or the rejected answer.
    pub agent: Option<i64>,
    /// Created at or after: ms since the epoch, or RFC 3339.
    #[param(
        pattern = r"^([0-9]{1,15}|[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9]))$"
    )]
    pub since: Option<String>,
    /// Created before: ms since the epoch, or RFC 3339.
    #[param(
        pattern = r"^([0-9]{1,15}|[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9]))$"
    )]
    pub until: Option<String>,
    /// Margin at least this (≥ 0).
    #[param(minimum = 0)]
    pub min_margin: Option<f64>,
    /// Judge agreement at least this, in [0, 1].
    #[param(minimum = 0, maximum = 1)]
    pub min_agreement: Option<f64>,
    /// Only the pairs this training run trained on; rows then carry
    /// `training_position`, their place in the run's training order.
    pub training_run: Option<i64>,
    /// `true`: only pairs where neither answer was cut off at the token limit (each
    /// row says so in `chosen_truncated` and `rejected_truncated`).
    pub complete_only: Option<bool>,
    /// `trl` (default) or `trl-conversational`.
    #[param(pattern = r"^(trl|trl-conversational)$")]
    pub format: Option<String>,
    /// Resume after this pair id (the last `pair_id` received).
    pub after: Option<i64>,
    /// Stop after this many rows.
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    pub limit: Option<u64>,
}

/// The two output layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Text prompt, chosen and rejected.
    Trl,
    /// Message lists.
    Conversational,
}

/// A checked export request.
#[derive(Debug, Clone)]
pub(crate) struct Export {
    pub(crate) filter: PairFilter,
    pub(crate) format: Format,
    pub(crate) after: i64,
    pub(crate) limit: Option<u64>,
}

fn parse_time(field: &str, text: &str) -> Result<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| Error::invalid(field, "expected ms since the epoch or an RFC 3339 time"))?;
    Ok(i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
}

/// Checks the query and resolves the Space slug.
pub(crate) async fn parse(state: &AppState, q: &ExportQuery) -> Result<Export> {
    let format = match q.format.as_deref().unwrap_or("trl") {
        "trl" => Format::Trl,
        "trl-conversational" => Format::Conversational,
        _ => {
            return Err(Error::invalid(
                "format",
                "must be trl or trl-conversational",
            ));
        }
    };
    if let Some(m) = q.min_margin
        && !(m.is_finite() && m >= 0.0)
    {
        return Err(Error::invalid("min_margin", "must be a number ≥ 0"));
    }
    if let Some(a) = q.min_agreement
        && !(0.0..=1.0).contains(&a)
    {
        return Err(Error::invalid("min_agreement", "must be within [0, 1]"));
    }
    let space_id = match &q.space {
        Some(slug) => Some(state.store.space_by_slug(slug).await?.id),
        None => None,
    };
    if q.limit.is_some_and(|l| l > i64::MAX as u64) {
        return Err(Error::invalid(
            "limit",
            "must be at most 9223372036854775807",
        ));
    }
    if let Some(agent) = q.agent {
        // 404 for an agent that does not exist, rather than a scan of every pair.
        state.store.agent(agent).await?;
    }
    if let Some(run) = q.training_run {
        // 404 for a run that does not exist, rather than an empty export.
        state.store.training_run(run).await?;
    }
    Ok(Export {
        filter: PairFilter {
            space_id,
            agent_id: q.agent,
            since_ms: q
                .since
                .as_deref()
                .map(|t| parse_time("since", t))
                .transpose()?,
            until_ms: q
                .until
                .as_deref()
                .map(|t| parse_time("until", t))
                .transpose()?,
            min_margin: q.min_margin,
            min_agreement: q.min_agreement,
            training_run_id: q.training_run,
            complete_only: q.complete_only.unwrap_or(false),
        },
        format,
        after: q.after.unwrap_or(0),
        limit: q.limit,
    })
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// Splits a ChatML prompt into messages, dropping the open assistant turn at its end;
/// a prompt without ChatML markers is one user message.
pub fn chat_messages(prompt: &str) -> Vec<Message> {
    const START: &str = "<|im_start|>";
    const END: &str = "<|im_end|>";
    if !prompt.contains(START) {
        return vec![Message {
            role: "user".into(),
            content: prompt.trim_end().to_string(),
        }];
    }
    prompt
        .split(START)
        .filter_map(|turn| {
            let (role, rest) = turn.split_once('\n')?;
            let content = rest.split(END).next().unwrap_or("");
            // The trailing `<|im_start|>assistant\n` is where the answer goes, not a turn.
            (!(role == "assistant" && content.is_empty())).then(|| Message {
                role: role.trim().to_string(),
                content: content.to_string(),
            })
        })
        .collect()
}

#[derive(Serialize)]
struct Row<'a, P: Serialize, C: Serialize> {
    prompt: P,
    chosen: C,
    rejected: C,
    /// The exact prompt (meta-prompt included), only where the chosen agent's owner
    /// opted it into public exports.
    policy_prompt: Option<&'a str>,
    /// sha256 of the exact prompt (what a proof-of-learning pairs root commits to).
    prompt_sha256: String,
    /// The better answer was cut off at the token limit, not finished.
    chosen_truncated: bool,
    /// The worse answer was cut off at the token limit, not finished.
    rejected_truncated: bool,
    pair_id: i64,
    match_id: i64,
    round_id: i64,
    round: i64,
    space: &'a str,
    chosen_agent_id: i64,
    chosen_agent_version_id: i64,
    rejected_agent_id: i64,
    rejected_agent_version_id: i64,
    margin: f64,
    judge_agreement: f64,
    created_at: i64,
    match_result_root: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    training_position: Option<i64>,
}

fn assistant(text: &str) -> Vec<Message> {
    vec![Message {
        role: "assistant".into(),
        content: text.to_string(),
    }]
}

/// Appends one pair as a JSON line in `format`.
pub(crate) fn write_line(out: &mut Vec<u8>, p: &ExportPair, format: Format) {
    macro_rules! row {
        ($prompt:expr, $chosen:expr, $rejected:expr) => {
            Row {
                prompt: $prompt,
                chosen: $chosen,
                rejected: $rejected,
                policy_prompt: (p.public_prompt != 0).then_some(p.exact_prompt.as_str()),
                prompt_sha256: platform::learning::prompt_sha256(&p.exact_prompt),
                chosen_truncated: store::is_truncated(&p.chosen_finish),
                rejected_truncated: store::is_truncated(&p.rejected_finish),
                pair_id: p.id,
                match_id: p.match_id,
                round_id: p.round_id,
                round: p.round_index,
                space: &p.space,
                chosen_agent_id: p.chosen_agent_id,
                chosen_agent_version_id: p.chosen_agent_version_id,
                rejected_agent_id: p.rejected_agent_id,
                rejected_agent_version_id: p.rejected_agent_version_id,
                margin: p.margin,
                judge_agreement: p.judge_agreement,
                created_at: p.created_at,
                match_result_root: p.match_result_root.as_deref(),
                training_position: p.training_position,
            }
        };
    }
    let written = match format {
        Format::Trl => serde_json::to_writer(&mut *out, &row!(&p.prompt, &p.chosen, &p.rejected)),
        Format::Conversational => serde_json::to_writer(
            &mut *out,
            &row!(
                if p.public_prompt != 0 {
                    chat_messages(&p.exact_prompt)
                } else {
                    chat_messages(&p.prompt)
                },
                assistant(&p.chosen),
                assistant(&p.rejected)
            ),
        ),
    };
    written.expect("writing JSON to memory cannot fail");
    out.push(b'\n');
}

/// The export as a stream of byte chunks, one database page per chunk.
pub(crate) fn stream_export(
    state: AppState,
    export: Export,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, Error>> + Send + 'static {
    let page = state.config.export_page_rows.max(1);
    let remaining = export.limit.unwrap_or(u64::MAX);
    stream::try_unfold(
        (state, export, remaining, false),
        move |(state, export, remaining, done)| async move {
            if done || remaining == 0 {
                return Ok(None);
            }
            let want = i64::try_from(remaining.min(page as u64)).unwrap_or(page);
            let rows = state
                .store
                .export_pairs_page(&export.filter, export.after, want)
                .await?;
            let done = (rows.len() as i64) < want;
            let Some(last) = rows.last() else {
                return Ok(None);
            };
            let next = Export {
                after: last.id,
                ..export.clone()
            };
            let mut chunk = Vec::with_capacity(rows.len() * 512);
            for p in &rows {
                write_line(&mut chunk, p, export.format);
            }
            let remaining = remaining - rows.len() as u64;
            Ok(Some((chunk, (state, next, remaining, done))))
        },
    )
}

/// A download's file name that says what it holds:
/// `rlfc-preferences-{space or all-spaces}[-agent-N][-run-N][-complete]-{format}.jsonl`.
/// The datasets page's script builds the same name from the same filters.
pub(crate) fn file_name(q: &ExportQuery) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(40)
            .collect()
    };
    let mut name = format!(
        "rlfc-preferences-{}",
        q.space
            .as_deref()
            .map(clean)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "all-spaces".into())
    );
    if let Some(a) = q.agent {
        name.push_str(&format!("-agent-{a}"));
    }
    if let Some(r) = q.training_run {
        name.push_str(&format!("-run-{r}"));
    }
    if q.complete_only == Some(true) {
        name.push_str("-complete");
    }
    name.push('-');
    name.push_str(&clean(q.format.as_deref().unwrap_or("trl")));
    name.push_str(".jsonl");
    name
}

/// Streams preference pairs as JSON lines for TRL.
#[utoipa::path(get, path = "/datasets/preferences", tag = "datasets", params(ExportQuery),
    responses(
        (status = 200, description = "JSON lines, one pair per line; resume with after=<last pair_id>", content_type = "application/x-ndjson", body = String),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, description = "Too many exports at once: try again shortly", body = ErrorBody)))]
async fn preferences(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response> {
    let export = parse(&state, &q).await?;
    let disposition = format!("attachment; filename=\"{}\"", file_name(&q));
    // A bounded number of exports stream at once, so downloads never take the
    // database connections the match runner needs; the slot is held until the body
    // is sent or the client goes away.
    let slot = state
        .export_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| Error::RateLimited)?;
    let body = Body::from_stream(stream_export(state, export).map(move |chunk| {
        let _held = &slot;
        chunk
    }));
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::HeaderName::from_static(RESUME_HEADER),
                "after=<pair_id of the last line>",
            ),
        ],
        [(header::CONTENT_DISPOSITION, disposition)],
        body,
    )
        .into_response())
}

/// Dataset routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(preferences))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_say_what_the_download_holds() {
        assert_eq!(
            file_name(&ExportQuery::default()),
            "rlfc-preferences-all-spaces-trl.jsonl"
        );
        let q = ExportQuery {
            space: Some("tweet-duel".into()),
            agent: Some(7),
            complete_only: Some(true),
            format: Some("trl-conversational".into()),
            ..ExportQuery::default()
        };
        assert_eq!(
            file_name(&q),
            "rlfc-preferences-tweet-duel-agent-7-complete-trl-conversational.jsonl"
        );
        let odd = ExportQuery {
            space: Some("a\"b/../c".into()),
            ..ExportQuery::default()
        };
        assert_eq!(file_name(&odd), "rlfc-preferences-abc-trl.jsonl");
    }

    #[test]
    fn chatml_prompts_become_messages() {
        let p = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
        let m = chat_messages(p);
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].role.as_str(), m[0].content.as_str()),
            ("system", "Be brief.")
        );
        assert_eq!((m[1].role.as_str(), m[1].content.as_str()), ("user", "Hi"));
        let plain = chat_messages("Just text\n");
        assert_eq!(
            plain,
            vec![Message {
                role: "user".into(),
                content: "Just text".into()
            }]
        );
    }
}
