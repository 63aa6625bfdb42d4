//! Control I2 (price registry only; budgets come later): what a call cost, from its usage and
//! a versioned table of prices per model. Every intelligence-log row records its cost and the
//! version it was costed with.
//!
//! Money is integers: prices in micro-dollars per million tokens, costs in micro-dollars
//! (`cost_micros`). The rounding rule: the four products (tokens times price) are summed
//! exactly (128-bit), and the sum is divided by one million once, rounding **up**, so a call
//! is never costed below what it used (a budget can be enforced on it later).

use std::collections::BTreeMap;

use portcullis_service::config::{ModelPrice, PricingConfig};

use crate::accounting::Usage;

/// The shipped registry's version: Anthropic's published list prices on this date (standard
/// API, prompts up to 200k tokens, 5-minute cache writes).
pub const SHIPPED_VERSION: &str = "anthropic-2025-11-24";

/// `$x` per million tokens, in micro-dollars per million tokens.
const fn usd(dollars: u64, cents_hundredths: u64) -> u64 {
    dollars * 1_000_000 + cents_hundredths * 100
}

/// The shipped prices (input, output, cache write, cache read), by model id; each alias is
/// listed with its dated snapshot.
const SHIPPED: &[(&[&str], [u64; 4])] = &[
    (
        &["claude-opus-4-5", "claude-opus-4-5-20251101"],
        [usd(5, 0), usd(25, 0), usd(6, 2500), usd(0, 5000)],
    ),
    (
        &["claude-sonnet-4-5", "claude-sonnet-4-5-20250929"],
        [usd(3, 0), usd(15, 0), usd(3, 7500), usd(0, 3000)],
    ),
    (
        &["claude-haiku-4-5", "claude-haiku-4-5-20251001"],
        [usd(1, 0), usd(5, 0), usd(1, 2500), usd(0, 1000)],
    ),
    (
        &["claude-opus-4-1", "claude-opus-4-1-20250805"],
        [usd(15, 0), usd(75, 0), usd(18, 7500), usd(1, 5000)],
    ),
    (
        &["claude-opus-4-0", "claude-opus-4-20250514"],
        [usd(15, 0), usd(75, 0), usd(18, 7500), usd(1, 5000)],
    ),
    (
        &["claude-sonnet-4-0", "claude-sonnet-4-20250514"],
        [usd(3, 0), usd(15, 0), usd(3, 7500), usd(0, 3000)],
    ),
    (
        &["claude-3-5-haiku-latest", "claude-3-5-haiku-20241022"],
        [usd(0, 8000), usd(4, 0), usd(1, 0), usd(0, 800)],
    ),
    (
        &["claude-3-haiku-20240307"],
        [usd(0, 2500), usd(1, 2500), usd(0, 3000), usd(0, 300)],
    ),
];

/// One version of the price registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriceRegistry {
    version: String,
    models: BTreeMap<String, ModelPrice>,
}

impl PriceRegistry {
    /// The shipped version ([`SHIPPED_VERSION`]).
    pub fn shipped() -> PriceRegistry {
        let mut models = BTreeMap::new();
        for (ids, [input, output, cache_write, cache_read]) in SHIPPED {
            for id in *ids {
                models.insert(
                    (*id).to_owned(),
                    ModelPrice {
                        input: *input,
                        output: *output,
                        cache_write: *cache_write,
                        cache_read: *cache_read,
                    },
                );
            }
        }
        PriceRegistry {
            version: SHIPPED_VERSION.to_owned(),
            models,
        }
    }

    /// The operator's version (`[gateway.pricing]`), which replaces the shipped one as a whole,
    /// or the shipped one.
    pub fn from_config(config: Option<&PricingConfig>) -> Result<PriceRegistry, String> {
        let Some(config) = config else {
            return Ok(PriceRegistry::shipped());
        };
        let version = config.version.trim();
        if version.is_empty()
            || version.len() > 100
            || !version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:+".contains(c))
        {
            return Err(format!(
                "gateway.pricing.version {:?}: 1 to 100 characters of letters, digits and - _ . : +",
                config.version
            ));
        }
        if config.models.is_empty() {
            return Err("gateway.pricing.models: a price registry needs at least one model (it replaces the shipped one as a whole)".to_owned());
        }
        for name in config.models.keys() {
            crate::routing::check_model_name(name)
                .map_err(|e| format!("gateway.pricing.models: {e}"))?;
        }
        Ok(PriceRegistry {
            version: version.to_owned(),
            models: config.models.clone(),
        })
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn price(&self, model: &str) -> Option<ModelPrice> {
        self.models.get(model).copied()
    }

    pub fn models(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }
}

/// The cost of `usage` at `price`, in micro-dollars: exact sum, one division, rounded up.
/// Negative counts (never sent by the provider) count as 0; a cost beyond `i64` saturates.
pub fn cost_micros(price: &ModelPrice, usage: &Usage) -> i64 {
    let t = |n: i64| u128::try_from(n.max(0)).unwrap_or(0);
    let exact = [
        (usage.input_tokens, price.input),
        (usage.output_tokens, price.output),
        (usage.cache_creation_input_tokens, price.cache_write),
        (usage.cache_read_input_tokens, price.cache_read),
    ]
    .into_iter()
    .fold(0u128, |sum, (tokens, rate)| {
        sum.saturating_add(t(tokens).saturating_mul(u128::from(rate)))
    });
    let micros = exact.div_ceil(1_000_000);
    i64::try_from(micros).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn usage(input: i64, output: i64, write: i64, read: i64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cache_creation_input_tokens: write,
            cache_read_input_tokens: read,
        }
    }

    #[test]
    fn i2_cost_is_exact_integer_arithmetic_with_cache_tokens() {
        let haiku = PriceRegistry::shipped().price("claude-haiku-4-5").unwrap();
        assert_eq!(
            haiku,
            ModelPrice {
                input: 1_000_000,
                output: 5_000_000,
                cache_write: 1_250_000,
                cache_read: 100_000
            }
        );
        // 1234 x $1 + 567 x $5 + 2000 x $1.25 + 30000 x $0.10, per million tokens:
        // 1234 + 2835 + 2500 + 3000 micro-dollars, exactly.
        assert_eq!(cost_micros(&haiku, &usage(1234, 567, 2000, 30_000)), 9569);
        let opus = PriceRegistry::shipped().price("claude-opus-4-5").unwrap();
        // 10 x 5 + 3 x 25 + 7 x 6.25 + 9 x 0.5 = 173.25 micro-dollars: rounded up once.
        assert_eq!(cost_micros(&opus, &usage(10, 3, 7, 9)), 174);
    }

    #[test]
    fn i2_rounding_is_up_once_per_call_never_per_component() {
        let haiku = PriceRegistry::shipped().price("claude-haiku-4-5").unwrap();
        assert_eq!(cost_micros(&haiku, &usage(0, 0, 0, 0)), 0);
        // One cache-read token costs a tenth of a micro-dollar: a call is never free.
        assert_eq!(cost_micros(&haiku, &usage(0, 0, 0, 1)), 1);
        // Ten of them are exactly one micro-dollar (rounding per component would say 10).
        assert_eq!(cost_micros(&haiku, &usage(0, 0, 0, 10)), 1);
        assert_eq!(cost_micros(&haiku, &usage(-5, 0, 0, 0)), 0);
        let huge = ModelPrice {
            input: u64::MAX,
            output: u64::MAX,
            cache_write: u64::MAX,
            cache_read: u64::MAX,
        };
        assert_eq!(
            cost_micros(&huge, &usage(i64::MAX, i64::MAX, i64::MAX, i64::MAX)),
            i64::MAX
        );
    }

    #[test]
    fn i2_an_operator_registry_replaces_the_shipped_one_and_is_checked() {
        let shipped = PriceRegistry::from_config(None).unwrap();
        assert_eq!(shipped.version(), SHIPPED_VERSION);
        let price = ModelPrice {
            input: 1,
            output: 2,
            cache_write: 3,
            cache_read: 4,
        };
        let own = PricingConfig {
            version: "acme-2026-12-01".into(),
            models: [("m-1".to_owned(), price)].into_iter().collect(),
        };
        let r = PriceRegistry::from_config(Some(&own)).unwrap();
        assert_eq!(r.version(), "acme-2026-12-01");
        assert_eq!(r.price("m-1"), Some(price));
        assert_eq!(r.price("claude-haiku-4-5"), None, "replaced as a whole");
        for bad in ["", "  ", "a b", &"v".repeat(101), "v\n1"] {
            let c = PricingConfig {
                version: bad.to_owned(),
                ..own.clone()
            };
            let err = PriceRegistry::from_config(Some(&c)).unwrap_err();
            assert!(err.contains("gateway.pricing.version"), "{err}");
        }
        let empty = PricingConfig {
            models: BTreeMap::new(),
            ..own.clone()
        };
        assert!(PriceRegistry::from_config(Some(&empty))
            .unwrap_err()
            .contains("at least one model"));
        let tiered = PricingConfig {
            models: [("tier:fast".to_owned(), price)].into_iter().collect(),
            ..own
        };
        assert!(PriceRegistry::from_config(Some(&tiered)).is_err());
    }
}
