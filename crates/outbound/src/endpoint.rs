//! Where a request goes: an origin checked once, at configuration.

use std::fmt;
use std::net::IpAddr;

use crate::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

/// `https://host[:port]`, or `http://` on a loopback host. An origin only: paths and queries
/// belong to each request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    scheme: Scheme,
    /// Without IPv6 brackets, for connecting and for TLS server-name checks.
    host: String,
    port: u16,
    /// `host[:port]` as written, for the `Host` header (and so for signatures).
    authority: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, Error> {
        let bad = |reason: &'static str| Error::Endpoint {
            url: url.to_owned(),
            reason,
        };
        let uri: hyper::Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let scheme = match uri.scheme_str() {
            Some("https") => Scheme::Https,
            Some("http") => Scheme::Http,
            _ => {
                return Err(bad(
                    "the scheme must be https:// (or http:// for a loopback host)",
                ))
            }
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("credentials do not belong in the URL"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("an endpoint is an origin: no path or query"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if scheme == Scheme::Http && !is_loopback(host) {
            // Keys and credentials travel in requests and answers: over plain HTTP to another
            // machine, anyone on the path would read them.
            return Err(bad(
                "plain http:// is only allowed for a loopback host; use https://",
            ));
        }
        let port = authority.port_u16().unwrap_or(match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        });
        Ok(Endpoint {
            scheme,
            host: host.to_owned(),
            port,
            authority: authority.as_str().to_owned(),
        })
    }

    pub fn is_tls(&self) -> bool {
        self.scheme == Scheme::Https
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `Host` header value.
    pub fn authority(&self) -> &str {
        &self.authority
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{scheme}://{}", self.authority)
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("https://kms.eu-west-1.amazonaws.com").unwrap();
        assert!(e.is_tls());
        assert_eq!(
            (e.host(), e.port(), e.authority()),
            (
                "kms.eu-west-1.amazonaws.com",
                443,
                "kms.eu-west-1.amazonaws.com"
            )
        );

        let e = Endpoint::parse("http://127.0.0.1:5000/").unwrap();
        assert!(!e.is_tls());
        assert_eq!(
            (e.host(), e.port(), e.authority()),
            ("127.0.0.1", 5000, "127.0.0.1:5000")
        );

        let e = Endpoint::parse("http://[::1]:4566").unwrap();
        assert_eq!(
            (e.host(), e.port(), e.authority()),
            ("::1", 4566, "[::1]:4566")
        );

        assert!(Endpoint::parse("http://localhost:4566").is_ok());
        assert!(Endpoint::parse("http://127.8.9.10").is_ok());

        for bad in [
            "http://10.0.0.5:5000",
            "http://kms.example.com",
            "http://localhost.example.com",
            "ftp://127.0.0.1",
            "https://user:pw@kms.example.com",
            "https://kms.example.com/path",
            "https://kms.example.com/?a=b",
            "kms.example.com",
            "",
        ] {
            assert!(
                matches!(Endpoint::parse(bad), Err(Error::Endpoint { .. })),
                "{bad}"
            );
        }
    }
}
