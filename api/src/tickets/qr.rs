//! A ticket's QR code as SVG, titled (for screen readers and printouts) in the holder's
//! language.

/// The token as a QR code whose `<title>` is `title`.
pub fn svg(token: &str, title: &str) -> Result<String, String> {
    let code = qrcode::QrCode::with_error_correction_level(token, qrcode::EcLevel::M)
        .map_err(|e| e.to_string())?;
    let image = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build();
    // The title goes right after the opening tag of the root element.
    let open = image.find("<svg").ok_or("no <svg> element")?;
    let end = open + image[open..].find('>').ok_or("unterminated <svg> tag")? + 1;
    Ok(format!("{}<title>{}</title>{}", &image[..end], escape(title), &image[end..]))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_title_is_escaped_inside_the_svg_element() {
        let image = svg("abc", "Tom & Jerry <live>").unwrap();
        let title = "<title>Tom &amp; Jerry &lt;live&gt;</title>";
        let at = image.find(title).expect("titled");
        assert!(image[..at].contains("<svg") && image[at..].contains("</svg>"), "{image}");
    }
}
