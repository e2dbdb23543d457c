//! `Range: bytes=...` parsing for file bodies (one range only, as the clients send).

/// What a Range header asks of a file of `total` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeReq {
    /// No (usable) Range header: send the whole file with 200.
    Full,
    /// Send bytes `start..=end` with 206.
    Partial { start: u64, end: u64 },
    /// Answer 416 with `Content-Range: bytes */total`.
    Unsatisfiable,
}

/// Parses a single `bytes=a-b`, `bytes=a-` or `bytes=-n` range. Anything we do not understand
/// (other units, several ranges, garbage) is ignored and the full body is sent, which RFC 9110
/// allows and which both clients handle by rewriting from zero.
pub fn parse(header: Option<&str>, total: u64) -> RangeReq {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeReq::Full;
    };
    if spec.contains(',') {
        return RangeReq::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeReq::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // Suffix range: the last n bytes.
        let Ok(n) = last.parse::<u64>() else {
            return RangeReq::Full;
        };
        if n == 0 || total == 0 {
            return RangeReq::Unsatisfiable;
        }
        return RangeReq::Partial {
            start: total.saturating_sub(n),
            end: total - 1,
        };
    }
    let Ok(start) = first.parse::<u64>() else {
        return RangeReq::Full;
    };
    let end = if last.is_empty() {
        None
    } else {
        match last.parse::<u64>() {
            Ok(e) if e >= start => Some(e),
            _ => return RangeReq::Full,
        }
    };
    if start >= total {
        return RangeReq::Unsatisfiable;
    }
    RangeReq::Partial {
        start,
        end: end.map_or(total - 1, |e| e.min(total - 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_clients_send() {
        assert_eq!(parse(None, 10), RangeReq::Full);
        assert_eq!(
            parse(Some("bytes=2-5"), 10),
            RangeReq::Partial { start: 2, end: 5 }
        );
        assert_eq!(
            parse(Some("bytes=4-"), 10),
            RangeReq::Partial { start: 4, end: 9 }
        );
        assert_eq!(
            parse(Some("bytes=4-100"), 10),
            RangeReq::Partial { start: 4, end: 9 }
        );
        assert_eq!(
            parse(Some("bytes=-3"), 10),
            RangeReq::Partial { start: 7, end: 9 }
        );
        assert_eq!(parse(Some("bytes=10-"), 10), RangeReq::Unsatisfiable);
        assert_eq!(parse(Some("bytes=0-"), 0), RangeReq::Unsatisfiable);
        assert_eq!(parse(Some("bytes=5-2"), 10), RangeReq::Full);
        assert_eq!(parse(Some("bytes=0-1,4-5"), 10), RangeReq::Full);
        assert_eq!(parse(Some("items=0-1"), 10), RangeReq::Full);
    }
}
