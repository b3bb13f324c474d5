//! Human-readable sizes ("8GiB", "64MiB", 4096) and durations ("500ms", "1s").
//!
//! Sizes accept a plain integer (bytes) or an integer with a unit. Binary units
//! (KiB, MiB, GiB, TiB) are powers of 1024; decimal units (KB, MB, GB, TB) are
//! powers of 1000, because that is what the letters mean on a drive's label.
//! Durations always need a unit: a bare `30` is ambiguous and rejected.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A size in bytes, written by humans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

const SIZE_UNITS: [(&str, u64); 10] = [
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
    ("", 1),
];

impl ByteSize {
    pub const fn bytes(self) -> u64 {
        self.0
    }

    pub const fn kib(n: u64) -> Self {
        ByteSize(n << 10)
    }

    pub const fn mib(n: u64) -> Self {
        ByteSize(n << 20)
    }

    pub const fn gib(n: u64) -> Self {
        ByteSize(n << 30)
    }

    /// Parses "4096", "64MiB", "8 GiB", "500MB".
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = (&text[..split], text[split..].trim());
        if number.is_empty() {
            return Err(format!("\"{text}\" is not a size: expected a whole number with a unit, like \"64MiB\""));
        }
        if unit.starts_with('.') {
            return Err(format!(
                "\"{text}\": sizes are whole numbers; use a smaller unit (\"1536MiB\", not \"1.5GiB\")"
            ));
        }
        let number: u64 = number.parse().map_err(|_| format!("\"{text}\" is too large"))?;
        let Some((_, scale)) = SIZE_UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(format!(
                "\"{text}\" has an unknown unit \"{unit}\" (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)"
            ));
        };
        number.checked_mul(*scale).map(ByteSize).ok_or_else(|| format!("\"{text}\" is too large"))
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides the size exactly, so the text
    /// parses back to the same number.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, scale) in [("TiB", 1u64 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if self.0 != 0 && self.0.is_multiple_of(scale) {
                return write!(f, "{}{name}", self.0 / scale);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"64MiB\" or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v).map(ByteSize).map_err(|_| E::custom(format!("a size cannot be negative ({v})")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// A duration, written by humans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

const DURATION_UNITS: [(&str, u64); 6] = [
    ("us", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("min", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

impl HumanDuration {
    pub const fn from_millis(ms: u64) -> Self {
        HumanDuration(Duration::from_millis(ms))
    }

    pub const fn from_secs(s: u64) -> Self {
        HumanDuration(Duration::from_secs(s))
    }

    pub const fn get(self) -> Duration {
        self.0
    }

    /// Parses "250us", "500ms", "1s", "5m", "1h".
    pub fn parse(text: &str) -> Result<HumanDuration, String> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = (&text[..split], text[split..].trim());
        if number.is_empty() {
            return Err(format!("\"{text}\" is not a duration: expected a whole number with a unit, like \"500ms\""));
        }
        if unit.is_empty() {
            return Err(format!("\"{text}\" needs a unit (us, ms, s, m or h), like \"{text}ms\""));
        }
        let number: u64 = number.parse().map_err(|_| format!("\"{text}\" is too large"))?;
        let Some((_, nanos)) = DURATION_UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(format!("\"{text}\" has an unknown unit \"{unit}\" (use us, ms, s, m or h)"));
        };
        number
            .checked_mul(*nanos)
            .map(|n| HumanDuration(Duration::from_nanos(n)))
            .ok_or_else(|| format!("\"{text}\" is too large"))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        for (name, scale) in
            [("h", 3_600_000_000_000u128), ("m", 60_000_000_000), ("s", 1_000_000_000), ("ms", 1_000_000)]
        {
            if nanos != 0 && nanos.is_multiple_of(scale) {
                return write!(f, "{}{name}", nanos / scale);
            }
        }
        write!(f, "{}us", nanos / 1_000)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration with a unit, such as \"500ms\" or \"30s\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                Err(E::custom(format!("{v} needs a unit: write it as a string such as \"{v}ms\" or \"{v}s\"")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                Err(E::custom(format!("{v} needs a unit: write it as a string such as \"{v}ms\" or \"{v}s\"")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                HumanDuration::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_and_decimal_units() {
        assert_eq!(ByteSize::parse("4096").unwrap(), ByteSize(4096));
        assert_eq!(ByteSize::parse("64MiB").unwrap(), ByteSize(64 << 20));
        assert_eq!(ByteSize::parse("8 GiB").unwrap(), ByteSize(8 << 30));
        assert_eq!(ByteSize::parse("500MB").unwrap(), ByteSize(500_000_000));
        assert_eq!(ByteSize::parse("3B").unwrap(), ByteSize(3));
    }

    #[test]
    fn bad_sizes_say_why() {
        assert!(ByteSize::parse("8GiBs").unwrap_err().contains("unknown unit"));
        assert!(ByteSize::parse("GiB").unwrap_err().contains("not a size"));
        assert!(ByteSize::parse("1.5GiB").unwrap_err().contains("whole numbers"));
        assert!(ByteSize::parse("99999999999TiB").unwrap_err().contains("too large"));
    }

    #[test]
    fn sizes_print_in_a_form_that_parses_back() {
        for bytes in [0u64, 1, 4096, 64 << 20, 3 << 30, (1 << 40) + 512] {
            let text = ByteSize(bytes).to_string();
            assert_eq!(ByteSize::parse(&text).unwrap(), ByteSize(bytes), "{text}");
        }
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(HumanDuration::parse("500ms").unwrap().get(), Duration::from_millis(500));
        assert_eq!(HumanDuration::parse("1s").unwrap().get(), Duration::from_secs(1));
        assert_eq!(HumanDuration::parse("250us").unwrap().get(), Duration::from_micros(250));
        assert_eq!(HumanDuration::parse("2m").unwrap().get(), Duration::from_secs(120));
        assert!(HumanDuration::parse("30").unwrap_err().contains("needs a unit"));
        assert!(HumanDuration::parse("3 fortnights").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn durations_print_in_a_form_that_parses_back() {
        for d in [Duration::from_micros(250), Duration::from_millis(1500), Duration::from_secs(3600), Duration::ZERO] {
            let text = HumanDuration(d).to_string();
            assert_eq!(HumanDuration::parse(&text).unwrap().get(), d, "{text}");
        }
    }
}
