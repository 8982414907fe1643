//! RMCP on UDP 623, the two probes a scanner sends a BMC: the ASF Presence Ping and, for
//! BMCs that ignore ASF, IPMI 1.5 "Get Channel Authentication Capabilities" without a
//! session. Byte layouts are DMTF DSP0136 (ASF 2.0: RMCP header, class 0x06, IANA 4542,
//! Presence Ping 0x80 / Pong 0x40) and IPMI 1.5 (message 0x38 on netfn App); RMCP/ASF fields
//! are big-endian, IPMI's little-endian. Pure: bytes in,
//! bytes out. Parsing is lenient about what does not matter (trailing bytes, OEM fields)
//! and strict about what proves a BMC answered this probe (class, IANA, type, tag).

/// RMCP version 1.0, reserved, sequence 0xFF (no RMCP ACK wanted).
const RMCP_HEADER: [u8; 3] = [0x06, 0x00, 0xFF];
const CLASS_ASF: u8 = 0x06;
const CLASS_IPMI: u8 = 0x07;
/// ASF's IANA enterprise number, 4542, big-endian.
const ASF_IANA: [u8; 4] = [0x00, 0x00, 0x11, 0xBE];
const ASF_PING: u8 = 0x80;
const ASF_PONG: u8 = 0x40;
/// IPMI "Get Channel Authentication Capabilities" (NetFn App, command 0x38).
const CMD_GET_CHANNEL_AUTH_CAPS: u8 = 0x38;

/// What a pong says about the BMC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pong {
    pub tag: u8,
    /// `entities & 0x80`: the BMC says it supports IPMI.
    pub ipmi: bool,
}

/// The 12-byte ASF Presence Ping with message tag `tag`.
pub fn ping(tag: u8) -> [u8; 12] {
    let mut p = [0u8; 12];
    p[..3].copy_from_slice(&RMCP_HEADER);
    p[3] = CLASS_ASF;
    p[4..8].copy_from_slice(&ASF_IANA);
    p[8] = ASF_PING;
    p[9] = tag;
    // p[10]: reserved; p[11]: data length 0.
    p
}

/// A Presence Pong answering the ping tagged `tag`, or `None` for anything else: another
/// class, another enterprise, another message type, another tag, or too short.
pub fn parse_pong(d: &[u8], tag: u8) -> Option<Pong> {
    // Header (4) + IANA (4) + type + tag + reserved + length (4) = 12, then at least the
    // IANA (4), OEM (4) and supported entities (1) of the pong's data.
    if d.len() < 21 || d[0] != 0x06 || d[3] & 0x1F != CLASS_ASF {
        return None;
    }
    if d[4..8] != ASF_IANA || d[8] != ASF_PONG || d[9] != tag {
        return None;
    }
    Some(Pong {
        tag,
        ipmi: d[20] & 0x80 != 0,
    })
}

/// The 23-byte IPMI 1.5 request "Get Channel Authentication Capabilities" (channel: this
/// one; privilege: administrator), outside any session, with request sequence `seq`
/// (0..=63).
pub fn get_channel_auth_caps(seq: u8) -> [u8; 23] {
    let mut p = [0u8; 23];
    p[..3].copy_from_slice(&RMCP_HEADER);
    p[3] = CLASS_IPMI;
    // IPMI session header: auth type none (1), sequence (4), session id (4), length (1).
    p[4] = 0x00;
    p[13] = 9;
    // The message: rsAddr (BMC), netFn App << 2 | rsLUN, checksum of both, rqAddr (remote
    // console), rqSeq << 2 | rqLUN, command, data (channel 0x8E = this one, privilege 4),
    // checksum from rqAddr on. Bit 7 of the channel byte asks for IPMI 2.0 extended data,
    // which 1.5 BMCs ignore.
    let msg = &mut p[14..];
    msg[0] = 0x20;
    msg[1] = 0x06 << 2;
    msg[2] = checksum(&msg[..2]);
    msg[3] = 0x81;
    msg[4] = (seq & 0x3F) << 2;
    msg[5] = CMD_GET_CHANNEL_AUTH_CAPS;
    msg[6] = 0x8E;
    msg[7] = 0x04;
    msg[8] = checksum(&msg[3..8]);
    p
}

/// IPMI's two's-complement checksum: the bytes and it sum to zero.
fn checksum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |s, x| s.wrapping_add(*x)).wrapping_neg()
}

/// Whether `d` is a successful answer (completion code 0) to the request with `seq`.
pub fn parse_auth_caps_reply(d: &[u8], seq: u8) -> bool {
    // Header (4) + session header without auth code (10) = 14, then the message: rqAddr,
    // netFn/rqLUN, checksum, rsAddr, rqSeq/rsLUN, command, completion code, ...
    if d.len() < 14 + 7 || d[0] != 0x06 || d[3] & 0x1F != CLASS_IPMI {
        return false;
    }
    // With an authentication type other than none, a 16-byte auth code precedes the length.
    let start = if d[4] == 0 { 14 } else { 30 };
    let Some(msg) = d.get(start..) else {
        return false;
    };
    let len = d[start - 1] as usize;
    if msg.len() < 7 || len < 7 || msg.len() < len {
        return false;
    }
    // A response has netFn odd (App response = 0x07).
    msg[1] >> 2 == 0x07
        && msg[4] >> 2 == seq & 0x3F
        && msg[5] == CMD_GET_CHANNEL_AUTH_CAPS
        && msg[6] == 0x00
        && checksum(&msg[..3]) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_ping_is_the_documented_twelve_bytes() {
        assert_eq!(
            ping(0x2A),
            [0x06, 0x00, 0xFF, 0x06, 0x00, 0x00, 0x11, 0xBE, 0x80, 0x2A, 0x00, 0x00]
        );
    }

    /// A Presence Pong as ASF 2.0 lays it out, from a BMC that supports IPMI.
    fn pong(tag: u8, entities: u8) -> Vec<u8> {
        let mut p = vec![
            0x06, 0x00, 0xFF, 0x06, 0x00, 0x00, 0x11, 0xBE, 0x40, tag, 0x00, 0x10,
        ];
        p.extend_from_slice(&[0x00, 0x00, 0x11, 0xBE]); // IANA
        p.extend_from_slice(&[0x00, 0x00, 0x00, 0x00]); // OEM
        p.push(entities);
        p.push(0x00); // interactions
        p.extend_from_slice(&[0; 6]);
        p
    }

    #[test]
    fn a_pong_with_our_tag_is_parsed_with_its_ipmi_bit() {
        assert_eq!(pong(7, 0x81).len(), 28);
        assert_eq!(
            parse_pong(&pong(7, 0x81), 7),
            Some(Pong { tag: 7, ipmi: true })
        );
        assert_eq!(
            parse_pong(&pong(7, 0x01), 7),
            Some(Pong {
                tag: 7,
                ipmi: false
            })
        );
        // Lenient: trailing bytes, a pong cut after the entities byte.
        let mut long = pong(7, 0x81);
        long.extend_from_slice(&[1, 2, 3]);
        assert!(parse_pong(&long, 7).is_some());
        assert!(parse_pong(&pong(7, 0x81)[..21], 7).is_some());
    }

    #[test]
    fn anything_but_a_pong_to_this_ping_is_not_a_pong() {
        assert_eq!(parse_pong(&pong(7, 0x81), 8), None, "another tag");
        assert_eq!(parse_pong(&ping(7), 7), None, "our own ping echoed");
        let mut other_iana = pong(7, 0x81);
        other_iana[7] = 0xBF;
        assert_eq!(parse_pong(&other_iana, 7), None);
        let mut ipmi_class = pong(7, 0x81);
        ipmi_class[3] = 0x07;
        assert_eq!(parse_pong(&ipmi_class, 7), None);
        assert_eq!(parse_pong(&pong(7, 0x81)[..20], 7), None, "too short");
        assert_eq!(parse_pong(&[], 7), None);
    }

    #[test]
    fn the_auth_caps_request_is_the_documented_bytes_with_valid_checksums() {
        assert_eq!(
            get_channel_auth_caps(0),
            [
                0x06, 0x00, 0xFF, 0x07, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x09, 0x20, 0x18, 0xC8, 0x81,
                0x00, 0x38, 0x8E, 0x04, 0xB5
            ]
        );
        let r = get_channel_auth_caps(0x23);
        assert_eq!(r[18], 0x23 << 2, "rqSeq");
        assert_eq!(r[17..].iter().fold(0u8, |s, x| s.wrapping_add(*x)), 0);
    }

    /// A reply as a BMC sends it: completion code `cc` to the request with `seq`.
    fn reply(seq: u8, cc: u8) -> Vec<u8> {
        let mut p = vec![0x06, 0x00, 0xFF, 0x07, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 16];
        let mut msg = vec![0x81, 0x07 << 2];
        msg.push(checksum(&msg));
        msg.extend_from_slice(&[0x20, seq << 2, 0x38, cc, 0x01, 0x15, 0x04, 0, 0, 0, 0, 0]);
        let c = checksum(&msg[3..]);
        msg.push(c);
        p.extend_from_slice(&msg);
        p
    }

    #[test]
    fn only_a_successful_reply_to_our_request_counts() {
        assert!(parse_auth_caps_reply(&reply(5, 0), 5));
        assert!(
            !parse_auth_caps_reply(&reply(5, 0xC1), 5),
            "completion code"
        );
        assert!(!parse_auth_caps_reply(&reply(6, 0), 5), "another sequence");
        assert!(
            !parse_auth_caps_reply(&get_channel_auth_caps(5), 5),
            "our own request"
        );
        let mut bad = reply(5, 0);
        bad[16] ^= 1;
        assert!(!parse_auth_caps_reply(&bad, 5), "header checksum");
    }

    proptest! {
        #[test]
        fn arbitrary_datagrams_never_panic_and_never_prove_a_bmc(
            d in proptest::collection::vec(any::<u8>(), 0..64),
            tag in any::<u8>(),
        ) {
            let _ = parse_auth_caps_reply(&d, tag & 0x3F);
            if let Some(p) = parse_pong(&d, tag) {
                // Only bytes that really are a pong to this tag are taken as one.
                prop_assert_eq!(d[8], 0x40);
                prop_assert_eq!(d[9], tag);
                prop_assert_eq!(&d[4..8], &ASF_IANA[..]);
                prop_assert_eq!(p.tag, tag);
            }
        }

        #[test]
        fn a_pong_mutated_in_a_field_that_matters_is_refused(
            tag in any::<u8>(),
            at in prop::sample::select(vec![0usize, 3, 4, 5, 6, 7, 8, 9]),
            flip in 1u8..=255,
        ) {
            let mut p = pong(tag, 0x81);
            p[at] ^= flip;
            // Byte 3 carries the class in its low 5 bits; flipping only the top bits keeps it.
            if at == 3 && flip & 0x1F == 0 {
                return Ok(());
            }
            prop_assert_eq!(parse_pong(&p, tag), None);
        }

        #[test]
        fn garbage_after_a_valid_header_is_not_a_reply(
            seq in 0u8..64,
            tail in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut d = vec![0x06, 0x00, 0xFF, 0x07, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, tail.len() as u8];
            d.extend_from_slice(&tail);
            if parse_auth_caps_reply(&d, seq) {
                // Then it really is one: netFn App response, our sequence, cmd, cc 0.
                prop_assert_eq!(tail[1] >> 2, 0x07);
                prop_assert_eq!(tail[4] >> 2, seq);
                prop_assert_eq!(tail[5], 0x38);
                prop_assert_eq!(tail[6], 0x00);
            }
        }
    }
}
