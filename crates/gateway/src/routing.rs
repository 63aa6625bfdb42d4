//! Control M3: which concrete model a call goes to. One registry maps the tiers `fast`,
//! `balanced` and `deep` to a concrete model per provider (`[gateway.tiers.anthropic]`); a
//! request names a tier (`"model": "tier:fast"`) or a concrete model the policy allows. The
//! policy is, for now, the operator's allow-list (`gateway.allowed_models`, by default the tier
//! models and every priced model); per-environment policy routes come with issue 14 section 8.
//!
//! Protects against: a caller choosing a model the operator did not allow (an expensive one, or
//! one no price covers), a body naming `model` twice so that Portcullis checks one and the
//! provider runs the other (refused), and a call that cannot be costed (refused before the
//! upstream unless `allow_unpriced_models`).

use std::collections::BTreeSet;

use portcullis_service::config::{GatewayConfig, ModelPrice, TierModels};

use crate::error::{ErrorKind, GatewayError};
use crate::pricing::PriceRegistry;

/// A tier of the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    Fast,
    Balanced,
    Deep,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Fast, Tier::Balanced, Tier::Deep];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Fast => "fast",
            Tier::Balanced => "balanced",
            Tier::Deep => "deep",
        }
    }

    fn of(models: &TierModels, tier: Tier) -> &str {
        match tier {
            Tier::Fast => &models.fast,
            Tier::Balanced => &models.balanced,
            Tier::Deep => &models.deep,
        }
    }
}

/// The prefix that names a tier instead of a model.
pub const TIER_PREFIX: &str = "tier:";

/// Where a call goes: its tier (if it named one), the concrete model, and its price with the
/// registry version (`None`: unpriced, allowed by the operator, or a call that costs nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub tier: Option<Tier>,
    pub model: String,
    pub price: Option<(String, ModelPrice)>,
}

/// The tier registry, the allow-list and the prices, built once from `[gateway]`.
#[derive(Clone, Debug)]
pub struct Router {
    anthropic: TierModels,
    allowed: BTreeSet<String>,
    prices: PriceRegistry,
    allow_unpriced: bool,
}

/// A model name as the configuration may give it: not empty, at most 200 characters, no
/// whitespace or control characters, and not a tier name.
pub(crate) fn check_model_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 200
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{name:?} is not a model name (1 to 200 characters, no spaces)"
        ));
    }
    if name.starts_with(TIER_PREFIX) {
        return Err(format!("{name:?}: a tier cannot be a concrete model"));
    }
    Ok(())
}

impl Router {
    /// From the configuration; refuses (at start, not on every call) a tier model that is not
    /// a valid name or, unless `allow_unpriced_models`, has no price.
    pub fn from_config(config: &GatewayConfig) -> Result<Router, String> {
        let prices = PriceRegistry::from_config(config.pricing.as_ref())?;
        let anthropic = config.tiers.anthropic.clone();
        for tier in Tier::ALL {
            let model = Tier::of(&anthropic, tier);
            check_model_name(model)
                .map_err(|e| format!("gateway.tiers.anthropic.{}: {e}", tier.as_str()))?;
            if !config.allow_unpriced_models && prices.price(model).is_none() {
                return Err(format!(
                    "gateway.tiers.anthropic.{}: {model:?} has no price in pricing version {}; add it to [gateway.pricing] or set gateway.allow_unpriced_models",
                    tier.as_str(),
                    prices.version()
                ));
            }
        }
        let allowed: BTreeSet<String> = match &config.allowed_models {
            Some(list) => {
                for m in list {
                    check_model_name(m).map_err(|e| format!("gateway.allowed_models: {e}"))?;
                }
                list.iter().cloned().collect()
            }
            None => Tier::ALL
                .iter()
                .map(|t| Tier::of(&anthropic, *t).to_owned())
                .chain(prices.models().map(str::to_owned))
                .collect(),
        };
        Ok(Router {
            anthropic,
            allowed,
            prices,
            allow_unpriced: config.allow_unpriced_models,
        })
    }

    /// The concrete model of each tier.
    pub fn tiers(&self) -> impl Iterator<Item = (Tier, &str)> {
        Tier::ALL
            .into_iter()
            .map(|t| (t, Tier::of(&self.anthropic, t)))
    }

    pub fn pricing_version(&self) -> &str {
        self.prices.version()
    }

    fn tier_list() -> String {
        Tier::ALL
            .iter()
            .map(|t| format!("{TIER_PREFIX}{}", t.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Where a call naming `requested` goes. `priced_only`: the call costs money (messages),
    /// so a model without a price is refused unless the operator allows unpriced models;
    /// `count_tokens` costs nothing and is not refused for it. Every refusal is an
    /// `invalid_request_error` naming what is allowed.
    pub fn route(&self, requested: &str, priced_only: bool) -> Result<Route, GatewayError> {
        let bad = |m: String| GatewayError::new(ErrorKind::InvalidRequest, m);
        let (tier, model) = match requested.strip_prefix(TIER_PREFIX) {
            Some(name) => {
                let Some(tier) = Tier::ALL.into_iter().find(|t| t.as_str() == name) else {
                    return Err(bad(format!(
                        "model: unknown tier {requested:?}; the tiers are {}",
                        Router::tier_list()
                    )));
                };
                (Some(tier), Tier::of(&self.anthropic, tier).to_owned())
            }
            None => {
                if !self.allowed.contains(requested) {
                    return Err(bad(format!(
                        "model: {requested:?} is not allowed here; name a tier ({}) or one of the allowed models: {}",
                        Router::tier_list(),
                        self.allowed.iter().cloned().collect::<Vec<_>>().join(", ")
                    )));
                }
                (None, requested.to_owned())
            }
        };
        let price = self
            .prices
            .price(&model)
            .map(|p| (self.prices.version().to_owned(), p));
        if price.is_none() && priced_only && !self.allow_unpriced {
            return Err(bad(format!(
                "model: {model:?} has no price in pricing version {}, so its calls cannot be costed; the operator must price it (gateway.pricing) or allow unpriced models",
                self.prices.version()
            )));
        }
        Ok(Route { tier, model, price })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn router(config: &GatewayConfig) -> Router {
        Router::from_config(config).unwrap()
    }

    #[test]
    fn m3_tiers_resolve_to_their_configured_models() {
        let r = router(&GatewayConfig::default());
        for (tier, model) in [
            ("tier:fast", "claude-haiku-4-5"),
            ("tier:balanced", "claude-sonnet-4-5"),
            ("tier:deep", "claude-opus-4-5"),
        ] {
            let route = r.route(tier, true).unwrap();
            assert_eq!(route.model, model);
            assert_eq!(route.tier.map(Tier::as_str), tier.strip_prefix("tier:"));
            assert_eq!(route.price.unwrap().0, crate::pricing::SHIPPED_VERSION);
        }
        let direct = r.route("claude-sonnet-4-5-20250929", true).unwrap();
        assert_eq!(
            (direct.tier, direct.model.as_str()),
            (None, "claude-sonnet-4-5-20250929")
        );
    }

    #[test]
    fn m3_unknown_tiers_and_disallowed_models_are_refused_naming_what_is_allowed() {
        let r = router(&GatewayConfig::default());
        for bad in [
            "tier:cheap",
            "tier:",
            "tier:FAST",
            "tier:fast ",
            "TIER:fast",
        ] {
            let e = r.route(bad, true).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidRequest);
            assert!(
                e.message.contains("tier:fast, tier:balanced, tier:deep"),
                "{bad}: {e}"
            );
        }
        let e = r.route("gpt-5", true).unwrap_err();
        assert!(
            e.message.contains("\"gpt-5\" is not allowed")
                && e.message.contains("claude-haiku-4-5"),
            "{e}"
        );
        let only = GatewayConfig {
            allowed_models: Some(vec!["claude-haiku-4-5".into()]),
            ..GatewayConfig::default()
        };
        let r = router(&only);
        assert!(
            r.route("claude-opus-4-5", true).is_err(),
            "priced but not allowed"
        );
        assert_eq!(
            r.route("tier:deep", true).unwrap().model,
            "claude-opus-4-5",
            "a tier is the operator's own choice"
        );
    }

    #[test]
    fn i2_unpriced_models_are_refused_unless_the_operator_allows_them() {
        let config = GatewayConfig {
            allowed_models: Some(vec!["claude-haiku-4-5".into(), "claude-unpriced-9".into()]),
            ..GatewayConfig::default()
        };
        let r = router(&config);
        let e = r.route("claude-unpriced-9", true).unwrap_err();
        assert!(e.message.contains("no price in pricing version"), "{e}");
        // count_tokens costs nothing: not refused, and not costed.
        assert_eq!(r.route("claude-unpriced-9", false).unwrap().price, None);
        let lax = GatewayConfig {
            allow_unpriced_models: true,
            ..config
        };
        assert_eq!(
            router(&lax).route("claude-unpriced-9", true).unwrap().price,
            None
        );
    }

    #[test]
    fn m3_a_tier_model_without_a_price_or_name_stops_the_node_at_start() {
        let mut c = GatewayConfig::default();
        c.tiers.anthropic.fast = "claude-unpriced-9".into();
        let e = Router::from_config(&c).unwrap_err();
        assert!(
            e.contains("gateway.tiers.anthropic.fast") && e.contains("no price"),
            "{e}"
        );
        c.allow_unpriced_models = true;
        assert!(Router::from_config(&c).is_ok());
        c.tiers.anthropic.deep = "tier:fast".into();
        assert!(Router::from_config(&c)
            .unwrap_err()
            .contains("gateway.tiers.anthropic.deep"));
        let c = GatewayConfig {
            allowed_models: Some(vec!["".into()]),
            ..GatewayConfig::default()
        };
        assert!(Router::from_config(&c)
            .unwrap_err()
            .contains("gateway.allowed_models"));
    }
}
