//! What `weft device add` and `weft device rotate` print: the one line that enrolls the device
//! (its config file and token file, or after a rotation only its token file, then the agent as
//! a service), and for phones the same line as a QR code.

use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;
use weft_agent::tls::Fingerprint;
use weft_protocol::rest::DeviceCreated;

/// How a device is enrolled: with the server URLs the CLI used (every replica's), the
/// device's name, kind and token, and the certificate fingerprint the CLI pinned.
#[derive(Debug)]
pub struct Enrollment<'a> {
    servers: &'a [String],
    device: &'a DeviceCreated,
    fingerprint: Option<Fingerprint>,
    /// After `weft device rotate`: `init --new-token`, which keeps an existing config.
    new_token: bool,
}

impl<'a> Enrollment<'a> {
    pub fn new(
        servers: &'a [String],
        device: &'a DeviceCreated,
        fingerprint: Option<Fingerprint>,
    ) -> Self {
        Self {
            servers,
            device,
            fingerprint,
            new_token: false,
        }
    }

    /// The line for a device enrolled before, whose token was rotated.
    pub fn new_token(self) -> Self {
        Self {
            new_token: true,
            ..self
        }
    }

    /// The command to run on the device (see [`agent_command`]).
    pub fn line(&self) -> String {
        let line = agent_command(
            self.servers,
            self.device.name.as_str(),
            &self.device.kind,
            &self.device.token,
            self.fingerprint,
        );
        if self.new_token {
            line.replacen(" init ", " init --new-token ", 1)
        } else {
            line
        }
    }

    /// What the CLI prints: the line, and as a QR code with `qr` or for a phone.
    pub fn print(&self, qr: bool) -> anyhow::Result<String> {
        let line = self.line();
        let what = if self.new_token {
            "it writes the new token, keeps its config and policy, and starts the service again"
        } else {
            "it writes its config and starts it as a service"
        };
        let mut out = format!("On the device, run ({what}):\n\n  {line}\n\n");
        if qr || self.device.kind == "phone" {
            out.push_str("or scan this into the phone (in Termux):\n\n");
            out.push_str(&qr_text(&line)?);
            out.push('\n');
        }
        Ok(out)
    }
}

/// `text` as one POSIX shell word: as it is when it is plainly safe, else single-quoted.
fn sh_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The command to run on the device: write the agent's config and token file, then install and
/// start the agent as a service. The token is in the environment of `init` only (which writes
/// it to a file readable by the user alone); the service never has it on its command line.
/// With `fingerprint` (the server certificate the CLI itself pinned), the agent accepts
/// exactly that certificate.
/// Several servers (replicas on one Postgres) are each given with `--server`: the agent
/// connects to whichever leads.
pub fn agent_command(
    servers: &[String],
    name: &str,
    kind: &str,
    token: &str,
    fingerprint: Option<Fingerprint>,
) -> String {
    let pin = fingerprint
        .map(|f| format!(" --server-fingerprint {f}"))
        .unwrap_or_default();
    let servers: Vec<String> = servers.iter().map(|s| sh_word(s)).collect();
    format!(
        "WEFT_DEVICE_TOKEN={} weft-agent init --server {}{pin} --name {} --kind {} && weft-agent install-service",
        sh_word(token),
        servers.join(" --server "),
        sh_word(name),
        sh_word(kind)
    )
}

/// `text` as a QR code drawn with Unicode half blocks, two modules per character, with its
/// quiet zone. Light modules are drawn as blocks (as `qrencode -t UTF8` does), which reads as
/// a normal code on a terminal with light text on a dark background.
pub fn qr_text(text: &str) -> anyhow::Result<String> {
    let code = QrCode::new(text.as_bytes())?;
    Ok(code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a QR code back from the text [`qr_text`] printed, the way a camera would see it
    /// on a dark terminal: blocks light, spaces dark.
    fn decode(printed: &str) -> String {
        let rows: Vec<Vec<char>> = printed.lines().map(|l| l.chars().collect()).collect();
        let width = rows.iter().map(Vec::len).max().unwrap();
        // Each character holds two modules, top and bottom.
        let mut modules = Vec::new();
        for row in &rows {
            let (mut top, mut bottom) = (Vec::new(), Vec::new());
            for x in 0..width {
                let (t, b) = match row.get(x).copied().unwrap_or(' ') {
                    '█' => (true, true),
                    '▀' => (true, false),
                    '▄' => (false, true),
                    ' ' => (false, false),
                    other => panic!("unexpected character {other:?}"),
                };
                top.push(t);
                bottom.push(b);
            }
            modules.push(top);
            modules.push(bottom);
        }
        const SCALE: usize = 4;
        let h = modules.len();
        let mut img =
            rqrr::PreparedImage::prepare_from_greyscale(width * SCALE, h * SCALE, |x, y| {
                if modules[y / SCALE][x / SCALE] {
                    255
                } else {
                    0
                }
            });
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1, "one QR code");
        grids[0].decode().unwrap().1
    }

    #[test]
    fn the_phone_qr_code_decodes_to_the_enrollment_command() {
        let token = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let fp = Fingerprint::of(b"cert");
        let cmd = agent_command(
            &["https://weft.lan:7600".into()],
            "pixel-7",
            "phone",
            token,
            Some(fp),
        );
        assert_eq!(
            cmd,
            format!(
                "WEFT_DEVICE_TOKEN={token} weft-agent init --server https://weft.lan:7600 \
                 --server-fingerprint {fp} --name pixel-7 --kind phone && weft-agent install-service"
            )
        );
        let printed = qr_text(&cmd).unwrap();
        assert!(printed.lines().count() > 10);
        assert_eq!(decode(&printed), cmd);
    }

    #[test]
    fn after_a_rotation_the_line_replaces_only_the_token() {
        let device = DeviceCreated {
            name: "mbp".into(),
            kind: "laptop".into(),
            token: "t0k".into(),
        };
        let fp = Fingerprint::of(b"cert");
        // Replicas: every server is listed; the agent connects to whichever leads.
        let servers = [
            "https://weft.lan:7600".into(),
            "https://weft2.lan:7600".into(),
        ];
        let e = Enrollment::new(&servers, &device, Some(fp)).new_token();
        assert_eq!(
            e.line(),
            format!(
                "WEFT_DEVICE_TOKEN=t0k weft-agent init --new-token --server https://weft.lan:7600 \
                 --server https://weft2.lan:7600 --server-fingerprint {fp} --name mbp --kind \
                 laptop && weft-agent install-service"
            )
        );
        let printed = e.print(false).unwrap();
        assert!(
            printed.contains(&e.line()) && !printed.contains('█'),
            "{printed}"
        );
    }

    #[test]
    fn odd_values_are_quoted_for_the_shell() {
        let cmd = agent_command(&["http://h:1/a b".into()], "n", "laptop", "t'ok", None);
        assert!(cmd.contains("--server 'http://h:1/a b'"), "{cmd}");
        assert!(cmd.starts_with(r"WEFT_DEVICE_TOKEN='t'\''ok' "), "{cmd}");
    }
}
