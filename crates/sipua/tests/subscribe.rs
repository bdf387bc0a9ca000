//! SUBSCRIBE/NOTIFY between two user agents on loopback (RFC 6665): Alice's `Subscriber`
//! against Bob's `Notifier`. The first NOTIFY carries the state, later ones its changes,
//! refreshes keep the subscription alive past its interval, and each way of ending it
//! (unsubscribe, `rejected`, `probation` with retry-after, 489) does what the RFC says.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sipua::{
    BodyAndContentType, Error, IncomingSubscription, Listen, Notifier, NotifierOptions,
    NotifierState, Subscriber, SubscriberOptions, SubscriptionState, UserAgent, UserAgentDelegate,
    UserAgentOptions,
};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn pidf(status: &str) -> BodyAndContentType {
    BodyAndContentType {
        body: format!("<presence><status>{status}</status></presence>").into(),
        content_type: "application/pidf+xml".into(),
    }
}

/// Bob: accepts presence subscriptions with these options and keeps the notifiers.
struct Presence {
    options: NotifierOptions,
    notifiers: Arc<Mutex<Vec<Notifier>>>,
    subscribes: Arc<Mutex<u32>>,
}

impl UserAgentDelegate for Presence {
    fn on_subscribe(&self, s: IncomingSubscription) {
        *self.subscribes.lock().unwrap() += 1;
        if s.event() != "presence" {
            s.reject(489);
            return;
        }
        let (options, notifiers) = (self.options.clone(), self.notifiers.clone());
        tokio::spawn(async move {
            if let Ok(n) = s.accept(options).await {
                notifiers.lock().unwrap().push(n);
            }
        });
    }
}

struct Pair {
    alice: UserAgent,
    bob: UserAgent,
    notifiers: Arc<Mutex<Vec<Notifier>>>,
    subscribes: Arc<Mutex<u32>>,
}

async fn pair(options: Option<NotifierOptions>) -> Pair {
    let notifiers = Arc::new(Mutex::new(Vec::new()));
    let subscribes = Arc::new(Mutex::new(0));
    let delegate = options.map(|options| {
        Arc::new(Presence {
            options,
            notifiers: notifiers.clone(),
            subscribes: subscribes.clone(),
        }) as Arc<dyn UserAgentDelegate>
    });
    let bob = UserAgent::new(UserAgentOptions {
        listen: Listen::Udp("127.0.0.1:0".parse().unwrap()),
        user: "bob".into(),
        delegate,
        ..Default::default()
    });
    bob.start().await.unwrap();
    let alice = UserAgent::new(UserAgentOptions {
        listen: Listen::Udp("127.0.0.1:0".parse().unwrap()),
        user: "alice".into(),
        ..Default::default()
    });
    alice.start().await.unwrap();
    Pair {
        alice,
        bob,
        notifiers,
        subscribes,
    }
}

impl Pair {
    fn subscriber(&self, expires: u32) -> Subscriber {
        let to = format!("sip:bob@{}", self.bob.local_addr().unwrap())
            .parse()
            .unwrap();
        let options = SubscriberOptions {
            expires,
            accept: vec!["application/pidf+xml".into()],
            ..Default::default()
        };
        Subscriber::new(&self.alice, to, "presence", options).unwrap()
    }

    async fn notifier(&self) -> Notifier {
        timeout(WAIT, async {
            loop {
                if let Some(n) = self.notifiers.lock().unwrap().last().cloned() {
                    return n;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("Bob accepted no subscription")
    }
}

async fn next_body(sub: &Subscriber) -> (String, String) {
    let n = timeout(WAIT, sub.next_notification())
        .await
        .expect("no NOTIFY came")
        .expect("the subscription ended");
    let state = n.subscription_state().expect("Subscription-State").state;
    (state, String::from_utf8_lossy(n.body()).into_owned())
}

async fn wait_state(sub: &Subscriber, want: SubscriptionState) {
    let mut rx = sub.state_change();
    timeout(WAIT, rx.wait_for(|s| *s == want))
        .await
        .unwrap_or_else(|_| panic!("never reached {want:?}, stuck at {:?}", sub.state()))
        .unwrap();
}

#[tokio::test]
async fn notifications_follow_the_state_and_unsubscribe_ends_both_sides() {
    let p = pair(Some(NotifierOptions {
        body: Some(pidf("open")),
        ..Default::default()
    }))
    .await;
    let sub = p.subscriber(600);
    assert_eq!(sub.state(), SubscriptionState::Initial);
    timeout(WAIT, sub.subscribe()).await.unwrap().unwrap();
    assert_eq!(
        next_body(&sub).await,
        (
            "active".into(),
            "<presence><status>open</status></presence>".into()
        )
    );
    wait_state(&sub, SubscriptionState::Subscribed).await;
    let n = p.notifier().await;
    assert_eq!(n.state(), NotifierState::Active);
    timeout(WAIT, n.notify(pidf("away")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        next_body(&sub).await.1,
        "<presence><status>away</status></presence>"
    );
    // Bob granted what Alice asked (600 is within his 3600)
    let granted = n
        .request()
        .typed::<sipua::message::header::Expires>()
        .unwrap()
        .unwrap();
    assert_eq!(granted.0, 600);
    timeout(WAIT, sub.unsubscribe()).await.unwrap().unwrap();
    assert_eq!(sub.state(), SubscriptionState::Terminated);
    // the notifier's last word: a terminated NOTIFY, still delivered
    assert_eq!(next_body(&sub).await.0, "terminated");
    timeout(WAIT, n.terminated()).await.unwrap();
    assert_eq!(n.notify(pidf("gone")).await, Err(Error::SessionTerminated));
    // both sides let go of the dialog
    timeout(WAIT, async {
        while p.alice.stats().await.unwrap().dialogs + p.bob.stats().await.unwrap().dialogs > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a dialog was left behind");
}

#[tokio::test]
async fn a_short_subscription_is_refreshed_before_it_expires() {
    let p = pair(Some(NotifierOptions {
        max_expires: 2,
        min_expires: 1,
        body: Some(pidf("open")),
        ..Default::default()
    }))
    .await;
    let sub = p.subscriber(3600);
    timeout(WAIT, sub.subscribe()).await.unwrap().unwrap();
    next_body(&sub).await;
    let n = p.notifier().await;
    // 2 s granted: after 5 s the refreshes (each followed by a NOTIFY) kept it alive
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(sub.state(), SubscriptionState::Subscribed);
    assert_eq!(n.state(), NotifierState::Active);
    let mut refreshed = 0;
    while let Ok(Some(n)) = timeout(Duration::from_millis(100), sub.next_notification()).await {
        assert_eq!(n.subscription_state().unwrap().state, "active");
        refreshed += 1;
    }
    assert!(refreshed >= 2, "only {refreshed} NOTIFYs after refreshes");
    // only one SUBSCRIBE was outside the dialog
    assert_eq!(*p.subscribes.lock().unwrap(), 1);
}

#[tokio::test]
async fn pending_until_the_notifier_authorises_it() {
    let p = pair(Some(NotifierOptions {
        pending: true,
        body: Some(pidf("open")),
        ..Default::default()
    }))
    .await;
    let sub = p.subscriber(600);
    timeout(WAIT, sub.subscribe()).await.unwrap().unwrap();
    // pending NOTIFYs carry no state
    assert_eq!(next_body(&sub).await, ("pending".into(), String::new()));
    wait_state(&sub, SubscriptionState::Pending).await;
    let n = p.notifier().await;
    timeout(WAIT, n.activate()).await.unwrap().unwrap();
    assert_eq!(next_body(&sub).await.0, "active");
    wait_state(&sub, SubscriptionState::Subscribed).await;
}

#[tokio::test]
async fn terminated_rejected_ends_the_subscription_with_its_reason() {
    let p = pair(Some(NotifierOptions::default())).await;
    let sub = p.subscriber(600);
    timeout(WAIT, sub.subscribe()).await.unwrap().unwrap();
    next_body(&sub).await;
    let n = p.notifier().await;
    timeout(WAIT, n.terminate("rejected", None))
        .await
        .unwrap()
        .unwrap();
    wait_state(&sub, SubscriptionState::Terminated).await;
    let t = sub.termination().unwrap();
    assert_eq!(t.reason.as_deref(), Some("rejected"));
    assert_eq!(
        *p.subscribes.lock().unwrap(),
        1,
        "it must not subscribe again"
    );
}

#[tokio::test]
async fn probation_subscribes_again_after_retry_after_seconds() {
    let p = pair(Some(NotifierOptions::default())).await;
    let sub = p.subscriber(600);
    timeout(WAIT, sub.subscribe()).await.unwrap().unwrap();
    next_body(&sub).await;
    let n = p.notifier().await;
    let before = std::time::Instant::now();
    timeout(WAIT, n.terminate("probation", Some(1)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next_body(&sub).await.0, "terminated");
    // a new SUBSCRIBE after one second (not one millisecond), then a new dialog's NOTIFY
    assert_eq!(next_body(&sub).await.0, "active");
    assert!(
        before.elapsed() >= Duration::from_secs(1),
        "{:?}",
        before.elapsed()
    );
    assert_eq!(*p.subscribes.lock().unwrap(), 2);
    wait_state(&sub, SubscriptionState::Subscribed).await;
}

#[tokio::test]
async fn a_package_nobody_serves_gets_489() {
    let p = pair(None).await;
    let sub = p.subscriber(600);
    let r = timeout(WAIT, sub.subscribe()).await.unwrap();
    assert!(
        matches!(r, Err(Error::Rejected { status: 489, .. })),
        "{r:?}"
    );
    assert_eq!(sub.state(), SubscriptionState::Terminated);
    assert_eq!(sub.termination().unwrap().status, Some(489));
}

#[tokio::test]
async fn a_too_short_interval_gets_423_and_is_retried_with_min_expires() {
    let p = pair(Some(NotifierOptions {
        min_expires: 120,
        ..Default::default()
    }))
    .await;
    let sub = p.subscriber(30);
    timeout(WAIT, sub.subscribe()).await.unwrap().unwrap();
    next_body(&sub).await;
    let n = p.notifier().await;
    let asked = n
        .request()
        .typed::<sipua::message::header::Expires>()
        .unwrap()
        .unwrap();
    assert_eq!(asked.0, 120);
    assert_eq!(*p.subscribes.lock().unwrap(), 2);
}

#[tokio::test]
async fn dropping_the_subscriber_unsubscribes() {
    let p = pair(Some(NotifierOptions::default())).await;
    let sub = p.subscriber(600);
    timeout(WAIT, sub.subscribe()).await.unwrap().unwrap();
    next_body(&sub).await;
    let n = p.notifier().await;
    drop(sub);
    timeout(WAIT, n.terminated())
        .await
        .expect("Bob's notifier still runs");
}
