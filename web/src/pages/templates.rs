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

/// An amount in the smallest unit (decimal text) in whole units of `money`, `0.1 ETH`
/// or `2.5 USDC`; text that is not an amount is shown as it is.
pub(crate) fn show(money: &store::Money, amount: &str) -> String {
    match amount.parse::<store::Wei>() {
        Ok(w) => money.show(w),
        Err(_) => amount.to_string(),
    }
}

/// The parsed templates.
pub(crate) struct Templates(tera::Tera);

impl Templates {
    /// Parses every embedded template, with amounts shown in `money`; a parse error is
    /// a bug the tests catch.
    pub(crate) fn load(money: store::Money) -> Templates {
        let mut tera = tera::Tera::new();
        // `{{ amount_wei | money }}`: the smallest unit in whole units (`0.1 ETH`,
        // `2.5 USDC`); no amount shows nothing, anything else shows as it is.
        tera.register_filter(
            "money",
            move |amount: tera::Value, _: tera::Kwargs, _: &tera::State| match amount.as_str() {
                Some(text) => show(&money, text),
                None if amount.is_none() => String::new(),
                None => amount.to_string(),
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
        let _ = super::Templates::load(store::Money::eth());
    }
}
