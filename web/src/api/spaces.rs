//! Spaces and their leaderboards. A leaderboard ranks by the conservative estimate
//! mu − 3σ and gives each rank an interval: the best and worst place the agent could
//! hold given everyone's 95% skill intervals (mu ± 2σ), so a newcomer with a wide σ
//! shows a wide interval rather than a falsely precise rank.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiPath, ApiQuery};
use crate::error::{Error, ErrorBody, Result};
use crate::state::AppState;

/// A fee tier of a Space.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FeeTierView {
    /// Id (what entries name).
    pub id: i64,
    /// Name.
    pub name: String,
    /// Fee per entry, wei as decimal text.
    pub fee_wei: String,
}

/// A Space.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpaceView {
    /// Id.
    pub id: i64,
    /// URL name.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Players per match (from the loaded rulebook).
    pub players: Option<usize>,
    /// Rounds per match (from the loaded rulebook).
    pub rounds: Option<u32>,
    /// The judges' rubric (from the loaded rulebook).
    pub rubric: Option<String>,
    /// The treasury's rake on each pot, basis points (from the loaded rulebook).
    pub rake_bps: Option<u16>,
    /// How the rest of the pot is paid, in words (from the loaded rulebook).
    pub payout: Option<String>,
    /// Fee tiers, cheapest first.
    pub fee_tiers: Vec<FeeTierView>,
}

/// One row of a leaderboard.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LeaderboardRow {
    /// 1-based rank by mu − 3σ.
    pub rank: usize,
    /// Best rank of its 95 % range, bootstrapped over the Space's matches (where it
    /// would stand had the matches gone a little differently).
    pub rank_best: usize,
    /// Worst rank of that range.
    pub rank_worst: usize,
    /// The agent.
    pub agent_id: i64,
    /// Its name.
    pub agent_name: String,
    /// Skill estimate.
    pub mu: f64,
    /// Uncertainty.
    pub sigma: f64,
    /// mu − 3σ, the ranking key.
    pub conservative: f64,
    /// Rated matches.
    pub matches_played: i64,
}

/// A payout rule as a player reads it.
fn payout_words(rule: &spaces::PayoutRule) -> String {
    match rule {
        spaces::PayoutRule::WinnerTakesAll => "the winner takes the rest".into(),
        spaces::PayoutRule::TopK { weights } => {
            let total: u32 = weights.iter().sum::<u32>().max(1);
            let shares: Vec<String> = weights
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    format!(
                        "place {}: {:.0} %",
                        i + 1,
                        f64::from(*w) * 100.0 / f64::from(total)
                    )
                })
                .collect();
            format!("the rest is shared by place ({})", shares.join(", "))
        }
        spaces::PayoutRule::Proportional => "the rest is shared in proportion to the scores".into(),
    }
}

/// Builds the view of a stored Space.
pub(crate) async fn space_view(state: &AppState, space: store::Space) -> Result<SpaceView> {
    let tiers = state.store.fee_tiers(space.id).await?;
    let book = state.rulebook(&space.slug);
    Ok(SpaceView {
        players: book.map(|b| b.players),
        rounds: book.map(|b| b.rounds),
        rubric: book.map(|b| b.rubric.clone()),
        rake_bps: book.map(|b| b.payout.rake_bps),
        payout: book.map(|b| payout_words(&b.payout.rule)),
        fee_tiers: tiers
            .into_iter()
            .map(|t| FeeTierView {
                id: t.id,
                name: t.name,
                fee_wei: t.fee_wei.to_string(),
            })
            .collect(),
        id: space.id,
        slug: space.slug,
        name: space.name,
        description: space.description,
    })
}

/// The most leaderboard rows one request returns.
pub const MAX_LEADERBOARD_ROWS: usize = 500;

/// One page of a Space's leaderboard (`limit` rows from `offset`, best first) and how
/// many rows it has. Rank intervals are counted over everyone in O(n log n), and only
/// the page's agents are looked up.
/// Bootstrap draws for a Space with `matches` settled matches: fewer for long
/// histories, so one recomputation stays well under a second.
fn replicates(matches: usize) -> usize {
    (400_000 / matches.max(1)).clamp(20, 200)
}

/// Each agent's rank range in a Space, bootstrapped over its settled matches
/// (`arena::ratings::bootstrap_rank_ranges`), cached until another match settles.
async fn rank_ranges(
    state: &AppState,
    space_id: i64,
    agents: &[i64],
) -> Result<std::collections::HashMap<i64, (usize, usize)>> {
    // A count first: the matches themselves are read only when one has settled since.
    let settled = state.store.settled_match_count(space_id).await?;
    if let Some((count, cached_agents, ranges)) = state
        .rank_ranges
        .lock()
        .expect("rank range cache")
        .get(&space_id)
        && *count == settled
        && cached_agents == agents
    {
        return Ok(ranges.clone());
    }
    let played = state.store.match_places(space_id).await?;
    let count = played.len();
    let list = agents.to_vec();
    let ranges = tokio::task::spawn_blocking(move || {
        arena::ratings::bootstrap_rank_ranges(&played, &list, replicates(count), space_id as u64)
    })
    .await
    .map_err(|e| Error::Internal(format!("rank ranges: {e}")))?;
    state
        .rank_ranges
        .lock()
        .expect("rank range cache")
        .insert(space_id, (settled, agents.to_vec(), ranges.clone()));
    Ok(ranges)
}

pub(crate) async fn leaderboard_rows(
    state: &AppState,
    space_id: i64,
    offset: usize,
    limit: usize,
) -> Result<(Vec<LeaderboardRow>, usize)> {
    let ratings = state.store.leaderboard(space_id).await?;
    let agents: Vec<i64> = ratings.iter().map(|r| r.agent_id).collect();
    let ranges = rank_ranges(state, space_id, &agents).await?;
    let n = ratings.len();
    let mut rows = Vec::with_capacity(limit.min(n));
    for (i, r) in ratings.into_iter().enumerate().skip(offset).take(limit) {
        let (best, worst) = ranges.get(&r.agent_id).copied().unwrap_or((1, n));
        let name = state.store.agent(r.agent_id).await?.name;
        rows.push(LeaderboardRow {
            // The range always holds the rank shown.
            rank: i + 1,
            rank_best: best.min(i + 1),
            rank_worst: worst.max(i + 1),
            agent_id: r.agent_id,
            agent_name: name,
            conservative: r.mu - 3.0 * r.sigma,
            mu: r.mu,
            sigma: r.sigma,
            matches_played: r.matches_played,
        });
    }
    Ok((rows, n))
}

/// Every Space.
#[utoipa::path(get, path = "/spaces", tag = "spaces",
    responses((status = 200, body = Vec<SpaceView>)))]
async fn list_spaces(State(state): State<AppState>) -> Result<Json<Vec<SpaceView>>> {
    let mut out = Vec::new();
    for s in state.store.spaces().await? {
        out.push(space_view(&state, s).await?);
    }
    Ok(Json(out))
}

/// One Space by slug.
#[utoipa::path(get, path = "/spaces/{slug}", tag = "spaces",
    params(("slug" = String, Path, description = "Space slug")),
    responses((status = 200, body = SpaceView), (status = 404, body = ErrorBody)))]
async fn get_space(
    State(state): State<AppState>,
    ApiPath(slug): ApiPath<String>,
) -> Result<Json<SpaceView>> {
    let space = state.store.space_by_slug(&slug).await?;
    Ok(Json(space_view(&state, space).await?))
}

/// Which part of a leaderboard to return.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LeaderboardQuery {
    /// Rows to skip (default 0).
    #[param(minimum = 0, maximum = 4294967295_i64)]
    pub offset: Option<usize>,
    /// Rows to return, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
}

/// A Space's leaderboard, best first, with rank intervals, a page at a time; the
/// `x-total-count` header says how many rows there are.
#[utoipa::path(get, path = "/spaces/{slug}/leaderboard", tag = "spaces",
    params(("slug" = String, Path, description = "Space slug"), LeaderboardQuery),
    responses((status = 200, body = Vec<LeaderboardRow>), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn leaderboard(
    State(state): State<AppState>,
    ApiPath(slug): ApiPath<String>,
    ApiQuery(q): ApiQuery<LeaderboardQuery>,
) -> Result<impl IntoResponse> {
    let offset = q.offset.unwrap_or(0);
    if offset > u32::MAX as usize {
        return Err(Error::invalid("offset", "must be at most 4294967295"));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_LEADERBOARD_ROWS).contains(&limit) {
        return Err(Error::invalid(
            "limit",
            format!("must be 1 to {MAX_LEADERBOARD_ROWS}"),
        ));
    }
    let space = state.store.space_by_slug(&slug).await?;
    let (rows, total) = leaderboard_rows(&state, space.id, offset, limit).await?;
    Ok(([("x-total-count", total.to_string())], Json(rows)))
}

/// Space routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_spaces))
        .routes(routes!(get_space))
        .routes(routes!(leaderboard))
}
