//! Malformed calls: each gets GARBAGE_ARGS, a version or program mismatch,
//! an auth error, or a clean close, and other clients keep working.

mod common;

use common::{trusting, Server};
use keel_nfs::client::{Auth, ClientError, Nfs3Client, RpcClient};
use keel_nfs::mount::MOUNT_PROGRAM;
use keel_nfs::nfs3::types::{NFS_PROGRAM, NFS_V3, PROC_GETATTR, PROC_WRITE};
use keel_nfs::rpc::message::{decode_reply, AcceptStat, ReplyHeader};
use keel_nfs::xdr::{Reader, Writer};
use rand::{Rng, SeedableRng};

fn refusal<T: std::fmt::Debug>(r: Result<T, ClientError>) -> ReplyHeader {
    match r {
        Err(ClientError::Rpc(h)) => h,
        other => panic!("expected an RPC refusal, got {other:?}"),
    }
}

#[test]
fn bad_arguments_programs_versions_and_procedures_get_their_rpc_errors() {
    let server = Server::start(trusting());
    let (mut c, root) = server.client(Auth::root(), "/");
    let garbage = ReplyHeader::Accepted(AcceptStat::GarbageArgs);
    assert_eq!(refusal(c.raw(PROC_GETATTR, &[0, 0, 0, 100])), garbage, "a handle longer than the call");
    let mut w = Writer::new();
    w.opaque(&root).u64(0).u32(10).u32(7).opaque(b"0123456789");
    assert_eq!(refusal(c.raw(PROC_WRITE, w.as_slice())), garbage, "stable_how 7 does not exist");
    assert_eq!(refusal(c.raw(99, &[])), ReplyHeader::Accepted(AcceptStat::ProcUnavail));
    assert_eq!(
        refusal(c.rpc.call(NFS_PROGRAM, 2, 0, &[])),
        ReplyHeader::Accepted(AcceptStat::ProgMismatch { low: 3, high: 3 })
    );
    assert_eq!(
        refusal(c.rpc.call(MOUNT_PROGRAM, 4, 0, &[])),
        ReplyHeader::Accepted(AcceptStat::ProgMismatch { low: 1, high: 3 })
    );
    assert_eq!(refusal(c.rpc.call(100_099, 1, 0, &[])), ReplyHeader::Accepted(AcceptStat::ProgUnavail));
    c.getattr(&root).unwrap();
}

#[test]
fn bad_rpc_versions_and_credentials_are_denied() {
    let server = Server::start(trusting());
    let mut rpc = RpcClient::connect(server.nfs_addr(), Auth::root()).unwrap();
    let mut w = Writer::new();
    w.u32(77).u32(0).u32(3).u32(NFS_PROGRAM).u32(NFS_V3).u32(0).u32(0).u32(0).u32(0).u32(0);
    rpc.send_raw_record(w.as_slice()).unwrap();
    let reply = rpc.recv_any().unwrap();
    assert_eq!(decode_reply(&reply).unwrap().1, ReplyHeader::RpcMismatch { low: 2, high: 2 });
    let mut w = Writer::new();
    w.u32(78).u32(0).u32(2).u32(NFS_PROGRAM).u32(NFS_V3).u32(0).u32(6).opaque(b"krb").u32(0).u32(0);
    rpc.send_raw_record(w.as_slice()).unwrap();
    assert_eq!(decode_reply(&rpc.recv_any().unwrap()).unwrap().1, ReplyHeader::AuthError(2));
    let mut w = Writer::new();
    w.u32(79).u32(0).u32(2).u32(NFS_PROGRAM).u32(NFS_V3).u32(0).u32(1).opaque(&[0, 0, 0, 1, 0xFF]).u32(0).u32(0);
    rpc.send_raw_record(w.as_slice()).unwrap();
    assert_eq!(decode_reply(&rpc.recv_any().unwrap()).unwrap().1, ReplyHeader::AuthError(1));
    // A reply sent to the server is ignored; the connection goes on.
    let mut w = Writer::new();
    w.u32(80).u32(1).u32(0);
    rpc.send_raw_record(w.as_slice()).unwrap();
    rpc.call(NFS_PROGRAM, NFS_V3, 0, &[]).unwrap();
}

#[test]
fn an_oversized_record_closes_only_its_own_connection() {
    let server = Server::start(trusting());
    let (mut other, root) = server.client(Auth::root(), "/");
    let mut bad = RpcClient::connect(server.nfs_addr(), Auth::root()).unwrap();
    bad.send_raw(&0xFFFF_FFF0u32.to_be_bytes()).unwrap();
    bad.send_raw(&[0; 1024]).unwrap();
    assert!(matches!(bad.recv_any(), Err(ClientError::Io(_))), "the server closes the stream");
    other.getattr(&root).unwrap();
    // An unreadable message (shorter than an xid) closes too.
    let mut short = RpcClient::connect(server.nfs_addr(), Auth::root()).unwrap();
    short.send_raw_record(&[1, 2]).unwrap();
    assert!(matches!(short.recv_any(), Err(ClientError::Io(_))));
    other.getattr(&root).unwrap();
}

/// Valid calls of many procedures, to mutate.
fn seeds(root: &[u8]) -> Vec<(u32, u32, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut w = Writer::new();
    w.opaque(root);
    out.push((NFS_PROGRAM, 3, PROC_GETATTR, w.clone().into_vec()));
    let mut l = w.clone();
    l.string(b"name");
    for proc_num in [3u32, 12, 13] {
        out.push((NFS_PROGRAM, 3, proc_num, l.clone().into_vec()));
    }
    let mut c = l.clone();
    c.u32(1).u32(1).u32(0o644).u32(0).u32(0).u32(0).u32(0).u32(0);
    out.push((NFS_PROGRAM, 3, 8, c.into_vec()));
    let mut r = w.clone();
    r.u64(0).u32(4096);
    out.push((NFS_PROGRAM, 3, 6, r.into_vec()));
    let mut d = w.clone();
    d.u64(0).fixed(&[0; 8]).u32(4096).u32(8192);
    out.push((NFS_PROGRAM, 3, 17, d.into_vec()));
    let mut m = Writer::new();
    m.string(b"/");
    out.push((MOUNT_PROGRAM, 3, 1, m.into_vec()));
    out
}

fn mutate(rng: &mut impl Rng, message: &mut Vec<u8>) {
    for _ in 0..rng.gen_range(1..6) {
        match rng.gen_range(0..4) {
            0 if !message.is_empty() => {
                let i = rng.gen_range(0..message.len());
                message[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if !message.is_empty() => {
                let i = rng.gen_range(0..message.len());
                message[i] = *[0u8, 0xFF, 0x7F, 0x80].get(rng.gen_range(0..4)).unwrap_or(&0);
            }
            2 => message.truncate(rng.gen_range(0..=message.len())),
            _ => {
                let i = rng.gen_range(0..=message.len());
                message.splice(i..i, (0..rng.gen_range(1..9)).map(|_| rng.gen::<u8>()));
            }
        }
    }
}

#[test]
fn thousands_of_mutated_calls_get_answers_or_clean_closes_and_the_server_lives() {
    let server = Server::start(trusting());
    let (mut witness, root) = server.client(Auth::root(), "/");
    let seeds = seeds(&root);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6E66_7333);
    let mut conn = RpcClient::connect(server.nfs_addr(), Auth::root()).unwrap();
    let (mut answered, mut closed) = (0, 0);
    for case in 0..3000u32 {
        let (prog, vers, proc_num, args) = &seeds[rng.gen_range(0..seeds.len())];
        let mut call = keel_nfs::rpc::message::encode_call(
            case,
            *prog,
            *vers,
            *proc_num,
            keel_nfs::rpc::message::OpaqueAuth {
                flavor: 1,
                body: &keel_nfs::rpc::AuthSys { stamp: 0, machine_name: b"f".to_vec(), uid: 0, gid: 0, gids: vec![] }
                    .encode(),
            },
        );
        call.fixed(args);
        let mut message = call.into_vec()[4..].to_vec();
        mutate(&mut rng, &mut message);
        // The mutated call, then a NULL whose reply marks the end of its
        // answers: anything before it belongs to the mutated call.
        conn.send_raw_record(&message).unwrap();
        let marker = conn.send_as(0xF000_0000 | case, NFS_PROGRAM, NFS_V3, 0, &[]);
        let survived = marker.is_ok()
            && loop {
                match conn.recv_any() {
                    Ok(reply) if Reader::new(&reply).u32().ok() == Some(0xF000_0000 | case) => break true,
                    Ok(_) => answered += 1,
                    Err(_) => break false,
                }
            };
        if !survived {
            closed += 1;
            conn = RpcClient::connect(server.nfs_addr(), Auth::root()).unwrap();
        }
        if case % 500 == 0 {
            witness.getattr(&root).unwrap();
        }
    }
    witness.getattr(&root).unwrap();
    assert!(answered > 1000, "answered {answered}, closed {closed}");
    let _ = Nfs3Client::connect(server.nfs_addr(), Auth::root()).unwrap().null();
}
