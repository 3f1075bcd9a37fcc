//! The otpauth URI (Google's Key URI format) and its QR code drawn in the terminal.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use qrcode::render::unicode::Dense1x2;
use qrcode::{EcLevel, QrCode};
use zeroize::Zeroizing;

use common::{Algorithm, OtpParams, TotpSecret};

use crate::cli::QrMode;

/// Everything but RFC 3986's unreserved characters is escaped, so that issuer and user
/// cannot add a `:`, `?` or `&` of their own.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Modules of light margin around the code, as ISO/IEC 18004 asks.
pub const QUIET_ZONE: usize = 4;

/// `otpauth://totp/ISSUER:USER?secret=...&issuer=...`, with algorithm, digits and period
/// only when they differ from the SHA1/6/30 every app assumes.
pub fn otpauth_uri(
    issuer: &str,
    user: &str,
    secret: &TotpSecret,
    params: &OtpParams,
) -> Zeroizing<String> {
    let issuer = utf8_percent_encode(issuer, COMPONENT).to_string();
    let user = utf8_percent_encode(user, COMPONENT);
    let mut uri = Zeroizing::new(format!(
        "otpauth://totp/{issuer}:{user}?secret={}&issuer={issuer}",
        secret.to_base32().as_str()
    ));
    if params.algorithm() != Algorithm::SHA1 {
        uri.push_str("&algorithm=");
        uri.push_str(params.algorithm().as_str());
    }
    if params.digits() != 6 {
        uri.push_str(&format!("&digits={}", params.digits()));
    }
    if params.period() != 30 {
        uri.push_str(&format!("&period={}", params.period()));
    }
    uri
}

/// The secret in groups of four, easier to type into an app by hand.
pub fn grouped(base32: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(base32.len() * 5 / 4 + 1));
    for (i, c) in base32.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// A drawn QR code: its lines and how many terminal columns it needs.
pub struct Drawing {
    pub text: Zeroizing<String>,
    pub columns: usize,
}

/// Draws `data` as a QR code, two modules per character cell (Unicode half blocks), with a
/// quiet zone. `None` for [`QrMode::None`].
///
/// - `utf8`: no colour codes, so the glyphs take the terminal's foreground colour. The
///   light modules and the quiet zone are drawn and the dark modules left as background,
///   which is right on the usual light-on-dark terminal (the convention of `qrencode -t
///   UTF8`); on a dark-on-light terminal the code comes out inverted, which many scanners
///   also read, and `--qr ansi` is the sure choice there.
/// - `ansi`: the dark modules are drawn as black glyphs on an explicit bright white
///   background, right on any terminal that has colours.
pub fn draw(data: &str, mode: QrMode) -> Result<Option<Drawing>, qrcode::types::QrError> {
    if mode == QrMode::None {
        return Ok(None);
    }
    // Level M survives a smudged screen or a moiré pattern; the URI still fits version 6.
    let code = QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M)?;
    let columns = code.width() + 2 * QUIET_ZONE;
    let mut renderer = code.render::<Dense1x2>();
    renderer.quiet_zone(true);
    if mode == QrMode::Utf8 {
        renderer
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark);
    }
    let image = Zeroizing::new(renderer.build());
    let mut text = Zeroizing::new(String::with_capacity(image.len() * 2));
    for line in image.lines() {
        if mode == QrMode::Ansi {
            // Black on bright white, reset at the end of every line so no colour leaks
            // into the rest of the screen if the line wraps or the program is stopped.
            text.push_str("\x1b[30;107m");
            text.push_str(line);
            text.push_str("\x1b[0m");
        } else {
            text.push_str(line);
        }
        text.push('\n');
    }
    Ok(Some(Drawing { text, columns }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_escapes_label_and_lists_only_non_default_params() {
        let secret = TotpSecret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap();
        let uri = otpauth_uri("Example Co", "alice", &secret, &OtpParams::default());
        assert_eq!(
            uri.as_str(),
            "otpauth://totp/Example%20Co:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Example%20Co"
        );
        let params = OtpParams::new(Algorithm::SHA256, 8, 60).unwrap();
        let uri = otpauth_uri("h:x&y", "a@b$c", &secret, &params);
        assert_eq!(
            uri.as_str(),
            "otpauth://totp/h%3Ax%26y:a%40b%24c?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=h%3Ax%26y&algorithm=SHA256&digits=8&period=60"
        );
    }

    #[test]
    fn grouping() {
        assert_eq!(grouped("ABCDEFGHIJ").as_str(), "ABCD EFGH IJ");
        assert_eq!(grouped("ABCD").as_str(), "ABCD");
    }

    #[test]
    fn drawing_has_the_quiet_zone_and_reported_width() {
        let d = draw("otpauth://totp/x:y?secret=AAAA", QrMode::Utf8)
            .unwrap()
            .unwrap();
        let lines: Vec<&str> = d.text.lines().collect();
        // A version v code has 17 + 4v modules, plus 4 light modules each side; two rows
        // of modules per line.
        let modules = d.columns - 2 * QUIET_ZONE;
        assert!(
            modules >= 21 && (modules - 17).is_multiple_of(4),
            "{modules}"
        );
        assert_eq!(lines.len(), d.columns.div_ceil(2));
        for l in &lines {
            assert_eq!(l.chars().count(), d.columns);
        }
        // utf8 draws light modules: the first two lines are quiet zone, all full blocks.
        assert!(lines[0].chars().all(|c| c == '\u{2588}'));
        assert!(draw("x", QrMode::None).unwrap().is_none());
        let a = draw("x", QrMode::Ansi).unwrap().unwrap();
        assert!(a
            .text
            .lines()
            .all(|l| l.starts_with("\x1b[30;107m") && l.ends_with("\x1b[0m") && l.contains(' ')));
    }
}
