//! Devices taken away: a removed device, or one whose token was rotated, is told so on its
//! connection, which the engine lets go of; its attempts are lost at once and placed
//! elsewhere; its old token is refused by name from then on.

use weft_protocol::DeviceName;
use weft_protocol::wire::ResultStatus;

use super::Rig;

#[tokio::test(start_paused = true)]
async fn a_removed_device_is_refused_and_its_attempt_runs_elsewhere_at_once() {
    let (rig, [mut d1, mut d2]) = Rig::with_shells(["d1", "d2"]).await;
    let r = rig.t1_accepted_by(&mut d1).await;
    rig.advance(500).await;

    let removed = rig
        .handle
        .remove_device(DeviceName::from("d1"))
        .await
        .unwrap();
    assert_eq!((removed.was_connected, removed.attempts_lost), (true, 1));
    rig.settled().await;
    d1.check("refused device_removed");
    assert!(d1.rx.is_closed(), "the engine let go of the connection");
    d2.check("assign t1#2");
    rig.check(
        &r,
        "
        running
        t1 dispatched
          #1 d1 lost +0..+500 device_lost
          #2 d2 dispatched +500
    ",
    )
    .await;

    // A result still coming on the cut connection is not taken.
    d1.result("t1#1", ResultStatus::Succeeded, None).await;
    assert_eq!(d1.connect(&["t1"]).await, "device_removed");
    let gone = rig.handle.remove_device(DeviceName::from("d1")).await;
    assert_eq!(gone.unwrap_err().code(), "device_not_found");
    d2.accept("t1").await;
    d2.succeed("t1").await;
    d2.check("ack t1#2");
    rig.check(
        &r,
        "
        succeeded
        t1 succeeded
          #1 d1 lost +0..+500 device_lost
          #2 d2 succeeded +500..+500
    ",
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_rotated_token_cuts_the_connection_and_only_the_new_one_works() {
    let (rig, [mut d1, mut d2]) = Rig::with_shells(["d1", "d2"]).await;
    let r = rig.t1_accepted_by(&mut d1).await;

    let rotated = rig
        .handle
        .rotate_token(DeviceName::from("d1"))
        .await
        .unwrap();
    rig.settled().await;
    d1.check("refused token_rotated");
    assert!(d1.rx.is_closed(), "the engine let go of the connection");
    d2.check("assign t1#2");
    assert_eq!(d1.connect(&["t1"]).await, "token_rotated");

    // Enrolled again with the new token: welcomed, but the lost attempt is not its any more.
    d1.token = rotated.token;
    assert_eq!(d1.connect(&["t1"]).await, "welcome");
    rig.check(
        &r,
        "
        running
        t1 dispatched
          #1 d1 lost +0..+0 device_lost
          #2 d2 dispatched +0
    ",
    )
    .await;
    let unknown = rig.handle.rotate_token(DeviceName::from("d9")).await;
    assert_eq!(unknown.unwrap_err().code(), "device_not_found");
}
