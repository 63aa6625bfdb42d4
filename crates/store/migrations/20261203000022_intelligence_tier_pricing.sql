-- Tier routing and the price registry (issue 14, sections 3 and 4; controls M3, I2): each
-- intelligence-log row records the tier the request named (NULL when it named a concrete
-- model; `model` is always the concrete model that was called) and the version of the price
-- registry its `cost_micros` was computed with (NULL when the model is unpriced and the
-- operator allows that, or the call costs nothing, such as count_tokens).
--
-- Expand only: both columns are nullable, rows written before keep reading and keep their
-- audit digest (the digest covers each column only when it is set).

ALTER TABLE intelligence_log
    ADD COLUMN tier             text CHECK (tier IN ('fast','balanced','deep')),
    ADD COLUMN pricing_version  text CHECK (length(pricing_version) BETWEEN 1 AND 100);
