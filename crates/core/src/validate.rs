//! Input rules shared by the API and the CLI, so both refuse the same things with the same words.

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    pub field: &'static str,
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Invalid {
    Invalid {
        field,
        reason: reason.into(),
    }
}

pub const PASSWORD_MIN_CHARS: usize = 12;
pub const PASSWORD_MAX_BYTES: usize = 1024;

/// Normalises an email address (trimmed, lower-cased) after a structural check. Delivery is
/// what really validates an address; this only refuses obvious garbage.
pub fn email(value: &str) -> Result<String, Invalid> {
    let v = value.trim().to_lowercase();
    if v.len() > 254 {
        return Err(invalid("email", "must be at most 254 characters"));
    }
    let Some((local, domain)) = v.rsplit_once('@') else {
        return Err(invalid("email", "must look like name@example.com"));
    };
    let ok = !local.is_empty()
        && local.len() <= 64
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !v
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>');
    if !ok {
        return Err(invalid("email", "must look like name@example.com"));
    }
    Ok(v)
}

pub fn password(value: &str) -> Result<(), Invalid> {
    if value.chars().count() < PASSWORD_MIN_CHARS {
        return Err(invalid(
            "password",
            format!("must be at least {PASSWORD_MIN_CHARS} characters"),
        ));
    }
    if value.len() > PASSWORD_MAX_BYTES {
        return Err(invalid(
            "password",
            format!("must be at most {PASSWORD_MAX_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// A human-readable name (environment, project, role, token, document title).
pub fn name(field: &'static str, value: &str, max_chars: usize) -> Result<String, Invalid> {
    let v = value.trim();
    if v.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if v.chars().count() > max_chars {
        return Err(invalid(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    if v.chars().any(|c| c.is_control()) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(v.to_owned())
}

/// A data-residency region code such as `us-east` or `eu-central` (D1). No region is special.
pub fn region(value: &str) -> Result<String, Invalid> {
    let v = value.trim();
    let ok = (2..=32).contains(&v.len())
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !v.starts_with('-')
        && !v.ends_with('-');
    if ok {
        Ok(v.to_owned())
    } else {
        Err(invalid(
            "region",
            "must be 2-32 characters of a-z, 0-9 and '-', e.g. eu-central",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            email("  Ada@Example.COM ").as_deref(),
            Ok("ada@example.com")
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "ada@.com",
        ] {
            assert!(email(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords_and_names() {
        assert!(password("short").is_err());
        assert!(password("correct horse battery").is_ok());
        assert!(name("name", "   ", 10).is_err());
        assert!(name("name", "a\u{7}b", 10).is_err());
        assert_eq!(name("name", " Acme ", 10).as_deref(), Ok("Acme"));
        assert!(region("eu-central").is_ok());
        assert!(region("EU").is_err());
    }
}
