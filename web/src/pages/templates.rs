//! The tera templates, embedded at compile time and parsed once at start.

use axum::response::Html;
use serde::Serialize;

use crate::error::Result;

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../../assets/web/templates/", $name)))),*]
    };
}

/// Every template, by name.
const TEMPLATES: &[(&str, &str)] = templates!(
    "base.html",
    "settings_form.html",
    "home.html",
    "space.html",
    "agent.html",
    "agent_new.html",
    "match.html",
    "datasets.html",
    "account.html",
    "error.html",
    "vote.html",
);

/// A wei amount (decimal text) as ether, `0.1 ETH`; text that is not an amount is
/// shown as it is.
pub(crate) fn eth(wei: &str) -> String {
    match wei.parse::<store::Wei>() {
        Ok(w) => w.to_eth(),
        Err(_) => wei.to_string(),
    }
}

/// The parsed templates.
pub(crate) struct Templates(tera::Tera);

impl Templates {
    /// Parses every embedded template; a parse error is a bug the tests catch.
    pub(crate) fn load() -> Templates {
        let mut tera = tera::Tera::new();
        // `{{ amount_wei | eth }}`: wei as ether (`0.1 ETH`); no amount shows nothing,
        // anything else shows as it is.
        tera.register_filter(
            "eth",
            |wei: tera::Value, _: tera::Kwargs, _: &tera::State| match wei.as_str() {
                Some(text) => eth(text),
                None if wei.is_none() => String::new(),
                None => wei.to_string(),
            },
        );
        tera.add_raw_templates(TEMPLATES.iter().copied())
            .expect("embedded templates parse");
        Templates(tera)
    }

    /// Renders `name` with `context`.
    pub(crate) fn render(&self, name: &str, context: &impl Serialize) -> Result<Html<String>> {
        let ctx = tera::Context::from_serialize(context)?;
        Ok(Html(self.0.render(name, &ctx)?))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_template_parses() {
        let _ = super::Templates::load();
    }
}
