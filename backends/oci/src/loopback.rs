//! The container's network namespace, with its loopback interface up.
//!
//! A new network namespace has one interface, `lo`, and it is down: without this step the
//! sandbox could not even talk to itself over 127.0.0.1, and libcontainer does not bring it
//! up. So the shim makes the container's network namespace itself, before it creates the
//! container, sets `lo` up with one rtnetlink message, and the spec names no network
//! namespace: the container stays in the shim's ([`enter_new_network_namespace`]). As root,
//! that namespace belongs to the initial user namespace, where the container holds no
//! capability at all; rootless, the shim does this inside its own user namespace
//! ([`crate::own_namespace`]).
//!
//! (Joining a network namespace libcontainer made, from another process after the
//! container is created, does not work rootless: the container's init has already switched
//! to the guest's id and is not dumpable, so the kernel refuses the caller its namespaces.)

use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sched::{CloneFlags, unshare};
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, recv, send, socket,
};

/// Why the container's network namespace could not be made or its loopback set up.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LoopbackError {
    /// `unshare(CLONE_NEWNET)` failed.
    #[error("cannot make the container's network namespace")]
    Unshare(#[source] Errno),
    /// No rtnetlink socket could be opened.
    #[error("cannot open an rtnetlink socket")]
    Socket(#[source] Errno),
    /// The request could not be sent.
    #[error("cannot send to rtnetlink")]
    Send(#[source] Errno),
    /// No reply could be read.
    #[error("no answer from rtnetlink")]
    Receive(#[source] Errno),
    /// The reply is shorter than an error message.
    #[error("the kernel's rtnetlink reply is too short")]
    ShortReply,
    /// The reply is not an acknowledgement.
    #[error("unexpected rtnetlink reply type {0}")]
    UnexpectedReply(u16),
    /// The kernel acknowledged with an error.
    #[error("the kernel refused to set the loopback interface up")]
    Refused(#[source] Errno),
}

/// Move this (single-threaded) shim into a new network namespace with `lo` up, for the
/// container to share.
pub(crate) fn enter_new_network_namespace() -> Result<(), LoopbackError> {
    unshare(CloneFlags::CLONE_NEWNET).map_err(LoopbackError::Unshare)?;
    set_up(LOOPBACK_INDEX)
}

/// The loopback device's index in every network namespace (the kernel's `LOOPBACK_IFINDEX`).
const LOOPBACK_INDEX: i32 = 1;

// rtnetlink constants (linux/netlink.h, linux/rtnetlink.h, linux/if.h).
const RTM_NEWLINK: u16 = 16;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLMSG_ERROR: u16 = 0x2;
const IFF_UP: u32 = 0x1;

/// `RTM_NEWLINK` for interface `index` with `IFF_UP` set, asking for an acknowledgement:
/// a `nlmsghdr` then an `ifinfomsg`, in host byte order.
fn set_link_up_message(index: i32) -> Vec<u8> {
    const HEADER: u32 = 16;
    const IFINFO: u32 = 16;
    let mut message = Vec::with_capacity(32);
    message.extend_from_slice(&(HEADER + IFINFO).to_ne_bytes()); // nlmsg_len
    message.extend_from_slice(&RTM_NEWLINK.to_ne_bytes()); // nlmsg_type
    message.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes()); // nlmsg_flags
    message.extend_from_slice(&1u32.to_ne_bytes()); // nlmsg_seq
    message.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel fills it in
    message.push(0); // ifi_family: AF_UNSPEC
    message.push(0); // padding
    message.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    message.extend_from_slice(&index.to_ne_bytes()); // ifi_index
    message.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
    message.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change: only this flag
    message
}

/// The kernel's answer to an acknowledged request: `Ok` or the errno it carries.
fn acknowledgement(reply: &[u8]) -> Result<(), LoopbackError> {
    let field = |at: usize, len: usize| reply.get(at..at + len);
    let kind = field(4, 2)
        .map(|b| u16::from_ne_bytes([b[0], b[1]]))
        .ok_or(LoopbackError::ShortReply)?;
    if kind != NLMSG_ERROR {
        return Err(LoopbackError::UnexpectedReply(kind));
    }
    let code = field(16, 4)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(LoopbackError::ShortReply)?;
    match code {
        0 => Ok(()),
        negative => Err(LoopbackError::Refused(Errno::from_raw(-negative))),
    }
}

fn set_up(index: i32) -> Result<(), LoopbackError> {
    let socket = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(LoopbackError::Socket)?;
    send(
        socket.as_raw_fd(),
        &set_link_up_message(index),
        MsgFlags::empty(),
    )
    .map_err(LoopbackError::Send)?;
    let mut reply = [0u8; 1024];
    let len =
        recv(socket.as_raw_fd(), &mut reply, MsgFlags::empty()).map_err(LoopbackError::Receive)?;
    acknowledgement(&reply[..len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_a_header_and_an_ifinfomsg() {
        let message = set_link_up_message(1);
        assert_eq!(message.len(), 32);
        assert_eq!(u32::from_ne_bytes(message[0..4].try_into().unwrap()), 32);
        assert_eq!(u16::from_ne_bytes([message[4], message[5]]), RTM_NEWLINK);
        assert_eq!(i32::from_ne_bytes(message[20..24].try_into().unwrap()), 1);
        assert_eq!(
            u32::from_ne_bytes(message[24..28].try_into().unwrap()),
            IFF_UP
        );
        assert_eq!(
            u32::from_ne_bytes(message[28..32].try_into().unwrap()),
            IFF_UP
        );
    }

    fn reply(kind: u16, code: i32) -> Vec<u8> {
        let mut reply = vec![0u8; 36];
        reply[4..6].copy_from_slice(&kind.to_ne_bytes());
        reply[16..20].copy_from_slice(&code.to_ne_bytes());
        reply
    }

    #[test]
    fn acknowledgements_are_read() {
        assert_eq!(acknowledgement(&reply(NLMSG_ERROR, 0)), Ok(()));
        assert_eq!(
            acknowledgement(&reply(NLMSG_ERROR, -1)),
            Err(LoopbackError::Refused(Errno::EPERM))
        );
        assert_eq!(
            acknowledgement(&reply(3, 0)),
            Err(LoopbackError::UnexpectedReply(3))
        );
        assert_eq!(
            acknowledgement(&[0u8; 10]),
            Err(LoopbackError::UnexpectedReply(0))
        );
        assert_eq!(
            acknowledgement(&reply(NLMSG_ERROR, 0)[..10]),
            Err(LoopbackError::ShortReply)
        );
        assert_eq!(acknowledgement(&[0u8; 3]), Err(LoopbackError::ShortReply));
    }

    #[test]
    fn a_refusal_names_the_step_then_the_errno_once() {
        let told = sandbox_core::error_chain(&LoopbackError::Refused(Errno::EPERM));
        let errno = Errno::EPERM.to_string();
        assert_eq!(
            told,
            format!("the kernel refused to set the loopback interface up: {errno}")
        );
        assert_eq!(told.matches(&errno).count(), 1, "{told}");
    }

    #[test]
    fn a_fresh_network_namespace_gets_loopback() {
        // Needs root (or an unprivileged user namespace); the behaviour suite checks the
        // real container either way.
        if !nix::unistd::geteuid().is_root() {
            #[allow(clippy::print_stderr, reason = "a skip must be loud")]
            {
                eprintln!("SKIP: needs root to make a network namespace");
            }
            return;
        }
        let handle = std::thread::spawn(|| -> Result<String, String> {
            unshare(CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())?;
            set_up(LOOPBACK_INDEX).map_err(|e| sandbox_core::error_chain(&e))?;
            let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            let address = listener.local_addr().map_err(|e| e.to_string())?;
            std::net::TcpStream::connect(address).map_err(|e| e.to_string())?;
            Ok(address.to_string())
        });
        let connected = handle.join().expect("the thread ends");
        assert!(connected.is_ok(), "{connected:?}");
    }
}
