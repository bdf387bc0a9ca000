//! Making a session's task: its channels and handles, its first state for either role, and
//! spawning it boxed in its own `session` span (the dialog's Call-ID and tags recorded into
//! the span once known).

use super::*;

pub(super) type Channels = (
    Mailbox<Box<SessionCommand>>,
    MailboxReceiver<Box<SessionCommand>>,
    StateSender<SessionState>,
    Arc<Mutex<SessionInfo>>,
);

pub(super) fn new_channels(delegate: Option<Arc<dyn SessionDelegate>>) -> Channels {
    let (ctx, crx) = mailbox(COMMAND_QUEUE);
    let (stx, _) = state_channel(SessionState::Initial);
    let info = Arc::new(Mutex::new(SessionInfo {
        delegate,
        ..SessionInfo::default()
    }));
    (ctx, crx, stx, info)
}

/// Starts the task of an outgoing call.
pub(crate) fn spawn_inviter(
    shared: Arc<Shared>,
    target: Uri,
    options: InviterOptions,
) -> Result<Session, Error> {
    if target.as_sip().is_none() {
        return Err(Error::InvalidArgument(format!(
            "{target}: only sip: and sips: targets can be called"
        )));
    }
    let key = shared.next_key();
    let inputs = attach(&shared, key)?;
    let (ctx, crx, stx, info) = new_channels(options.delegate.clone());
    {
        let mut i = info.lock().unwrap_or_else(|e| e.into_inner());
        let mut local = sipua_message::NameAddr::new(shared.aor());
        local.display = shared.options.display_name.clone();
        i.local_identity = Some(Box::new(local));
        i.remote_identity = Some(Box::new(sipua_message::NameAddr::new(target.clone())));
    }
    let me = Some(ctx.downgrade());
    let session = Session::new(ctx, stx.watched(), info.clone());
    let task = Task {
        key,
        me,
        rng: Rng::new(key ^ shared.local.port() as u64 ^ 0x5eed),
        sdh_options: options.session_description_handler_options.clone(),
        modifiers: options.session_description_handler_modifiers.clone().into(),
        ..Task::blank(
            shared,
            stx,
            info,
            crx,
            inputs,
            Role::Uac(Box::new(Uac {
                target,
                caller: Caller::new(options.early_media),
                options,
                invite: None,
                resend: None,
            })),
        )
    };
    let span = tracing::info_span!(
        target: "sipua",
        "session",
        key,
        role = "caller",
        call_id = tracing::field::Empty,
        local_tag = tracing::field::Empty,
        remote_tag = tracing::field::Empty,
    );
    let mut task = task;
    task.span = span.clone();
    tokio::spawn(tracing::Instrument::instrument(
        Box::pin(Box::new(task).run(None)),
        span,
    ));
    Ok(session)
}

/// Names the dialog in the session's span (its Call-ID and both tags), once it exists.
pub(super) fn record_dialog(span: &tracing::Span, d: &DialogId) {
    if !span.is_disabled() {
        let cut = |s: &str| s.get(..80).unwrap_or(s).to_owned();
        span.record("call_id", cut(&d.call_id));
        span.record("local_tag", cut(&d.local_tag));
        span.record("remote_tag", cut(&d.remote_tag));
    }
}

/// Starts the task of an incoming call; the driver has already attached `key`.
pub(crate) fn spawn_invitation(
    shared: Arc<Shared>,
    key: SessionKey,
    id: TransactionId,
    request: Request,
    inputs: MailboxReceiver<SessionInput>,
    replaces: Option<SessionKey>,
    source: Option<std::net::SocketAddr>,
) {
    let (ctx, crx, stx, info) = new_channels(None);
    let request = Arc::new(request);
    {
        let mut i = info.lock().unwrap_or_else(|e| e.into_inner());
        // the identities are read from the INVITE when asked (most servers never ask)
        i.invite = Some(Arc::new(super::super::kept::KeptRequest::new(&request)));
        // RFC 3325: the identity a trusted proxy asserted
        i.asserted_identity = request
            .typed::<sipua_message::header::PAssertedIdentity>()
            .and_then(Result::ok)
            .map(|p| Box::new(p.0));
    }
    let me = Some(ctx.downgrade());
    let call_id_of = request.clone();
    let call_id = call_id_of.call_id();
    let invitation = Invitation {
        session: Session::new(ctx, stx.watched(), info.clone()),
        request: request.clone(),
    };
    // unanswered, the INVITE gets 480 after the no-answer timeout, or 487 once its
    // Expires has passed (RFC 3261 §13.3.1)
    // the INVITE's offer, or the offer it asks of us (RFC 3261 §13.3.1): the handler is
    // asked for anything only once a response needs a description
    let session = Machine::callee(
        Instant::now(),
        shared.options.no_answer_timeout,
        request.typed::<Expires>().and_then(Result::ok).map(|e| e.0),
        !request.body_bytes().is_empty(),
    );
    let task = Task {
        key,
        me,
        rng: Rng::new(key ^ shared.local.port() as u64 ^ 0xca11),
        peer: source,
        session,
        ..Task::blank(
            shared,
            stx,
            info,
            crx,
            inputs,
            Role::Uas(Box::new(Uas {
                id,
                callee: Callee::new(Rel100::of(&request)),
                secure: matches!(
                    request.top_via_transport(),
                    Some(sipua_message::Transport::Tls | sipua_message::Transport::Wss)
                ),
                request: Some(request),
                replaces,
                awaiting_prack: None,
            })),
        )
    };
    // boxed: the future is about 3 KB, and a task cell holding it inline is moved whole
    // through spawn and rewritten whole at each stage change (several such copies a call)
    let span = tracing::info_span!(
        target: "sipua",
        "session",
        key,
        role = "callee",
        call_id = call_id.get(..80).unwrap_or(call_id),
        local_tag = tracing::field::Empty,
        remote_tag = tracing::field::Empty,
    );
    let mut task = task;
    task.span = span.clone();
    tokio::spawn(tracing::Instrument::instrument(
        Box::pin(Box::new(task).run(Some(invitation))),
        span,
    ));
}

impl Task {
    /// A task in its first state, with everything a role does not set; the role comes in
    /// (a placeholder made only to be replaced would cost allocations a call).
    pub(super) fn blank(
        shared: Arc<Shared>,
        state: StateSender<SessionState>,
        info: Arc<Mutex<SessionInfo>>,
        commands: MailboxReceiver<Box<SessionCommand>>,
        inputs: MailboxReceiver<SessionInput>,
        role: Role,
    ) -> Task {
        Task {
            key: 0,
            span: tracing::Span::none(),
            shared,
            state,
            info,
            commands,
            inputs,
            handles_gone: false,
            sdh: None,
            sdh_options: SessionDescriptionHandlerOptions::default(),
            answer_options: None,
            modifiers: Box::default(),
            dialog: None,
            role,
            requests: IdMap::default(),
            pending: None,
            peer: None,
            last_local: None,
            bye_after_ack: None,
            session: Machine::caller(),
            rng: Rng::new(0),
            me: None,
            transfers: None,
            wake_asked: None,
        }
    }
}
