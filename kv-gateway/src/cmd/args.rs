//! Argument parsing shared by the commands, with Redis's error texts.

use crate::db::Res;
use crate::resp::decode::parse_i64;
use crate::resp::Reply;

pub fn not_integer() -> Reply {
    Reply::error("ERR value is not an integer or out of range")
}

pub fn not_float() -> Reply {
    Reply::error("ERR value is not a valid float")
}

pub fn syntax() -> Reply {
    Reply::error("ERR syntax error")
}

pub fn wrong_arity(name: &str) -> Reply {
    Reply::error(format!("ERR wrong number of arguments for '{name}' command"))
}

pub fn int(arg: &[u8]) -> Res<i64> {
    parse_i64(arg).ok_or_else(not_integer)
}

/// A float as Redis reads scores: decimal or exponent forms, `inf`, `+inf`,
/// `-inf`; never NaN.
pub fn float(arg: &[u8]) -> Res<f64> {
    let text = std::str::from_utf8(arg).map_err(|_| not_float())?;
    let value = match text.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        t if t.is_empty() || t.contains(char::is_whitespace) || t.contains("nan") => return Err(not_float()),
        t => t.parse::<f64>().map_err(|_| not_float())?,
    };
    if value.is_nan() {
        return Err(not_float());
    }
    Ok(value)
}

pub fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// The number of elements a pairs-taking command got (`HSET k f v f v`).
pub fn pairs(args: &[Vec<u8>], name: &str) -> Res<usize> {
    if args.is_empty() || !args.len().is_multiple_of(2) {
        return Err(wrong_arity(name));
    }
    Ok(args.len() / 2)
}
