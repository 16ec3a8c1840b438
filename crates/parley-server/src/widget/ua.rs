//! Device type, browser and operating system from a User-Agent header, parsed by the `woothee`
//! crate (a maintained, dependency-light port of the multi-language Woothee project's rules —
//! chosen over `uaparser`, which loads a large regex file at start-up).

/// What a User-Agent says about the visitor's device.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Device {
    /// `desktop`, `mobile`, `tablet`, `bot` or `unknown`.
    pub kind: &'static str,
    /// Browser name and version (`Chrome 130.0.0.0`); empty when unknown.
    pub browser: String,
    /// Operating system and version (`Windows 10`, `Mac OSX 10.15.7`); empty when unknown.
    pub os: String,
}

fn join(name: &str, version: &str) -> String {
    let known = |s: &str| !s.is_empty() && s != "UNKNOWN";
    match (known(name), known(version)) {
        (true, true) => format!("{name} {version}"),
        (true, false) => name.to_owned(),
        _ => String::new(),
    }
}

/// Parses a User-Agent header value.
pub fn parse(user_agent: &str) -> Device {
    let Some(r) = woothee::parser::Parser::new().parse(user_agent) else {
        return Device {
            kind: "unknown",
            ..Default::default()
        };
    };
    // Woothee files tablets under "smartphone"; iPads and Android devices without "Mobile"
    // in their User-Agent are tablets.
    let tablet = r.os == "iPad" || (r.os == "Android" && !user_agent.contains("Mobile"));
    let kind = match r.category {
        "pc" => "desktop",
        "smartphone" | "mobilephone" if tablet => "tablet",
        "smartphone" | "mobilephone" => "mobile",
        "crawler" => "bot",
        _ => "unknown",
    };
    Device {
        kind,
        browser: join(r.name, r.version),
        os: join(r.os, &r.os_version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_user_agents() {
        let d = parse(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
        );
        assert_eq!(d.kind, "desktop");
        assert_eq!(d.browser, "Chrome 130.0.0.0");
        assert!(d.os.starts_with("Windows"), "{}", d.os);
        let d = parse(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        );
        assert_eq!(d.kind, "mobile");
        assert!(d.os.starts_with("iPhone"), "{}", d.os);
        let d = parse(
            "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
        );
        assert_eq!(d.kind, "tablet");
        let d = parse("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)");
        assert_eq!(d.kind, "bot");
        assert_eq!(parse("").kind, "unknown");
    }
}
