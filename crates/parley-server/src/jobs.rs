//! Background work (DESIGN.md section 7): everything Parley does after it has answered a
//! request runs from a durable job row ([`parley_store::JobStore`]), written in the same
//! transaction as the change that caused it, so a crash or restart delays the work and never
//! loses it. The worker ([`start`], run by [`crate::serve`]) claims due jobs, runs them,
//! renews their lease while they run, and deletes them when done; a failing job is retried
//! with the one backoff policy ([`crate::retry::Policy::delay`] from the `[jobs]` settings)
//! until its attempts are used up, then kept as `failed`. On PostgreSQL every server runs a
//! worker and each job goes to one of them.
//!
//! | kind | written by | does |
//! | --- | --- | --- |
//! | `whatsapp.delivery`, `telegram.delivery`, `messenger.delivery` | the webhook, before it answers 200 (payload: the raw body) | the delivery's statuses, messages and media; writes the follow-up jobs with the messages |
//! | `retell.delivery`, `vapi.delivery`, `twilio.delivery` | the voice platform's webhook, before it answers 200 (payload: the raw body) | the call ([`crate::channels::voip`]): its conversation and turns, or the analysis added to it; writes the `voip.recording` job with the turns |
//! | `voip.recording` | a call with a recording URL (`POST /api/v1/calls`, the voice webhooks) | downloads the recording through the guarded client, with its waveform peaks |
//! | `answer` | the ingest of a new customer message that an assistant may answer (API, channels) | the assistant's turn, at most once per customer message, and the reply on its channel |
//! | `reply.send` | a team member's reply on WhatsApp or Telegram ([`crate::team::reply`]) | sends it once and records its delivery ([`crate::team::deliver`]) |
//! | `widget.call_turn` | an utterance of a browser voice call (`POST /widget/v1/call`), in the transaction that stores it | transcribes it, has the assistant answer, speaks the answer into a stored audio file ([`crate::widget::call`]) |
//! | `conversations.bulk` | a bulk action on conversations ([`crate::bulk::start`]), with its record | works through its batches, recording progress ([`crate::bulk::run_job`]) |
//! | `media.download` | a channel message whose file failed every download attempt | downloads it again later (up to [`MEDIA_DOWNLOAD_ATTEMPTS`] times), then transcribes or describes it as configured |
//!
//! **Exactly once.** A delivery processed twice (a crash after its messages were stored)
//! stores nothing twice (WhatsApp `wamid`, Telegram `update_id`) and so writes no second
//! follow-up. An `answer` job run twice finds the answer its first run stored after the
//! customer's message ([`crate::assistant::runtime::respond_to`]) and only sends it if it was
//! not sent. Sending itself is at least once: a crash between the platform's acceptance and
//! Parley recording it sends the reply again on restart.
//!
//! **Stopping.** On graceful shutdown the worker stops claiming, gives running jobs
//! [`SHUTDOWN_GRACE`] to finish, and hands the rest back to the queue (due at once, their
//! attempt not counted). After a crash, their leases run out (`[jobs] lease_ms`) and any
//! server takes them; SQLite, which serves one server, takes them back when it starts.
//!
//! **Test hook.** `PARLEY_TEST_HOLD_JOBS` (test only; never set it in production): a comma
//! list of job kinds and hold points (`answer.send`: after the answer is stored, before it is
//! sent). A claimed job of a listed kind, or a run reaching a listed point, waits there for
//! ever (its lease kept alive), so a test can kill the process at that moment.

use std::time::Duration;

use parley_core::Timestamp;
use parley_core::channel::{ChannelConnection, ChannelKind};
use parley_store::StoreError;
use parley_store::jobs::{IngestJob, Job, NewJob};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::AppState;
use crate::config::JobSettings;
use crate::error::ApiError;
use crate::retry::Policy;

/// A WhatsApp webhook delivery (payload: the raw body).
pub const WHATSAPP_DELIVERY: &str = "whatsapp.delivery";
/// A Telegram webhook update (payload: the raw body).
pub const TELEGRAM_DELIVERY: &str = "telegram.delivery";
/// A Messenger Page webhook delivery (payload: the raw body).
pub const MESSENGER_DELIVERY: &str = "messenger.delivery";
/// A Retell webhook, `call_ended` or `call_analyzed` (payload: the raw body).
pub const RETELL_DELIVERY: &str = "retell.delivery";
/// A Vapi `end-of-call-report` server message (payload: the raw body).
pub const VAPI_DELIVERY: &str = "vapi.delivery";
/// A Twilio call status or recording status callback, completed (payload: the raw
/// form-encoded body).
pub const TWILIO_DELIVERY: &str = "twilio.delivery";
/// The assistant's answer to a customer message (payload: `{"reply": null | {"to"} | {"chat"}}`).
pub const ANSWER: &str = "answer";
/// A channel file to download again (payload: `{"index": n}`, the attachment's position).
pub const MEDIA_DOWNLOAD: &str = "media.download";
/// Kind of the job that downloads a phone call's recording (`POST /api/v1/calls` with a
/// `recording_url`; [`crate::api::calls::download_recording`]).
pub const VOIP_RECORDING: &str = "voip.recording";

/// A turn of a browser voice call (payload: the widget's transcription and speech settings;
/// [`crate::widget::call::run_turn`]).
pub const CALL_TURN: &str = "widget.call_turn";

/// Claims of a webhook delivery before it is given up.
pub const DELIVERY_ATTEMPTS: u32 = 10;
/// Claims of an answer job (store failures; provider failures end in a stored notice).
pub const ANSWER_ATTEMPTS: u32 = 5;
/// Later downloads of a file that failed its first [`crate::retry::DOWNLOAD`] attempts.
pub const MEDIA_DOWNLOAD_ATTEMPTS: u32 = 6;
/// How long a graceful shutdown waits for running jobs before handing them back.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The longest a worker sleeps before looking for due jobs (jobs written by other servers,
/// retries coming due); a job written by this server wakes it at once.
pub const POLL: Duration = Duration::from_millis(500);
/// The test hook's environment variable (see the module docs).
pub const HOLD_ENV: &str = "PARLEY_TEST_HOLD_JOBS";

/// The worker's shared part of [`AppState`]: its id, its wake-up signal, its settings.
#[derive(Debug)]
pub struct Jobs {
    /// This server's worker id (`locked_by` of the jobs it holds): host, process, random.
    pub worker: String,
    /// The `[jobs]` settings.
    pub settings: JobSettings,
    wake: Notify,
    insights: Notify,
    hold: Vec<String>,
}

impl Jobs {
    /// The worker state for `settings`; reads the test hook ([`HOLD_ENV`]).
    pub fn new(settings: &JobSettings) -> Jobs {
        let hold: Vec<String> = std::env::var(HOLD_ENV)
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if !hold.is_empty() {
            tracing::warn!(
                ?hold,
                "{HOLD_ENV} is set: these jobs will never finish (test only)"
            );
        }
        Jobs {
            worker: format!("{}-{}", std::process::id(), uuid::Uuid::now_v7().simple()),
            settings: settings.clone(),
            wake: Notify::new(),
            insights: Notify::new(),
            hold,
        }
    }

    /// Wakes this server's worker (after writing a job it should run soon).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Wakes this server's insights analyser ([`crate::insights`]) after conversations
    /// changed.
    pub fn wake_insights(&self) {
        self.insights.notify_one();
    }

    /// Resolves at the next [`Jobs::wake_insights`] (or at once if one came meanwhile).
    pub(crate) async fn insights_woken(&self) {
        self.insights.notified().await;
    }

    /// Test hook: waits for ever when `point` is listed in [`HOLD_ENV`].
    pub(crate) async fn hold_at(&self, point: &str) {
        if self.hold.iter().any(|h| h == point) {
            tracing::warn!(point, "holding here for ever ({HOLD_ENV})");
            std::future::pending::<()>().await;
        }
    }

    /// The retry policy of a job allowed `attempts` claims.
    fn policy(&self, attempts: u32) -> Policy {
        Policy {
            attempts,
            first: self.settings.retry_first,
            max: self.settings.retry_max,
            jitter: true,
        }
    }
}

/// Why a job run did not finish.
#[derive(Debug)]
pub enum JobError {
    /// Worth trying again later (a store or network failure).
    Retry(String),
    /// Trying again would fail the same way (the job is kept as `failed`).
    Permanent(String),
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        JobError::Retry(e.to_string())
    }
}

impl From<ApiError> for JobError {
    fn from(e: ApiError) -> Self {
        if e.status.is_server_error() {
            JobError::Retry(e.message)
        } else {
            JobError::Permanent(e.message)
        }
    }
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobError::Retry(m) | JobError::Permanent(m) => f.write_str(m),
        }
    }
}

/// Stores a webhook delivery of connection `c` (its raw `body`) as a job, durably, and wakes
/// the worker. Errors: the store's (the webhook then answers 500 and the platform retries).
pub async fn enqueue_delivery(
    state: &AppState,
    kind: &str,
    c: &ChannelConnection,
    body: &[u8],
) -> Result<(), StoreError> {
    let mut job = NewJob::new(
        kind,
        String::from_utf8_lossy(body).into_owned(),
        DELIVERY_ATTEMPTS,
    );
    job.workspace_id = Some(c.workspace_id);
    job.connection_id = Some(c.id);
    state.store.jobs().enqueue(&job).await?;
    state.jobs.wake();
    Ok(())
}

/// The follow-up answer job for the last message of batch `batch` of an ingest: `reply`
/// names where the answer goes (`null` for none, `{"to": phone}` for WhatsApp, `{"to": psid}`
/// for Messenger, `{"chat": id}` for Telegram), `connection` the channel connection it goes through.
pub fn answer_job(
    batch: usize,
    workspace: parley_core::WorkspaceId,
    connection: Option<parley_core::ChannelConnectionId>,
    reply: Value,
) -> IngestJob {
    let mut job = NewJob::new(
        ANSWER,
        json!({ "reply": reply }).to_string(),
        ANSWER_ATTEMPTS,
    );
    job.workspace_id = Some(workspace);
    job.connection_id = connection;
    IngestJob { batch, job }
}

/// The follow-up job downloading attachment `index` of the last message of batch `batch`
/// again later, through connection `c`.
pub fn media_job(batch: usize, c: &ChannelConnection, index: usize, state: &AppState) -> IngestJob {
    let mut job = NewJob::new(
        MEDIA_DOWNLOAD,
        json!({ "index": index }).to_string(),
        MEDIA_DOWNLOAD_ATTEMPTS,
    );
    job.workspace_id = Some(c.workspace_id);
    job.connection_id = Some(c.id);
    job.run_after = Timestamp::now().add_millis(state.settings.jobs.retry_first.as_millis() as i64);
    IngestJob { batch, job }
}

/// The running worker; [`Worker::stop`] ends it cleanly.
pub struct Worker {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts this server's worker. On SQLite (one server per database) it first takes back the
/// jobs its previous run left running.
pub fn start(state: AppState) -> Worker {
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(run(state, stopped));
    Worker { stop, task }
}

impl Worker {
    /// Stops claiming, waits up to [`SHUTDOWN_GRACE`] for running jobs, and hands the rest
    /// back to the queue.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the job worker ended badly");
        }
    }
}

async fn run(state: AppState, mut stopped: watch::Receiver<bool>) {
    let jobs = state.store.jobs();
    if state.store.backend() == "sqlite" {
        match jobs.requeue_running().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "took back the jobs the last run left unfinished"),
            Err(e) => tracing::error!(error = %e, "could not take back unfinished jobs"),
        }
    }
    let worker = state.jobs.worker.clone();
    let slots = state.jobs.settings.workers;
    let lease = state.jobs.settings.lease;
    let mut running: JoinSet<()> = JoinSet::new();
    loop {
        if *stopped.borrow() {
            break;
        }
        let free = slots.saturating_sub(running.len());
        let mut claimed = 0;
        if free > 0 {
            let now = Timestamp::now();
            match jobs
                .claim(&worker, now, now.add_millis(lease.as_millis() as i64), free)
                .await
            {
                Ok(list) => {
                    claimed = list.len();
                    for job in list {
                        running.spawn(run_one(state.clone(), job));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not claim jobs"),
            }
        }
        // Claimed as many as there was room for: look again at once when a slot frees.
        let wait = if claimed > 0 && claimed == free {
            Duration::from_millis(10)
        } else {
            POLL
        };
        tokio::select! {
            _ = state.jobs.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            Some(_) = running.join_next(), if !running.is_empty() => {}
            _ = stopped.changed() => {}
        }
    }
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        running.abort_all();
        while running.join_next().await.is_some() {}
    }
    match jobs.release(&worker).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(jobs = n, "handed unfinished jobs back to the queue"),
        Err(e) => tracing::warn!(error = %e, "could not hand unfinished jobs back"),
    }
}

/// Runs one claimed job with its lease renewed, and records how it ended.
async fn run_one(state: AppState, job: Job) {
    let jobs = state.store.jobs();
    let worker = state.jobs.worker.clone();
    let lease = state.jobs.settings.lease;
    let heartbeat = async {
        loop {
            tokio::time::sleep(lease / 3).await;
            let until = Timestamp::now().add_millis(lease.as_millis() as i64);
            match jobs.renew(job.id, &worker, until).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(job = %job.id, error = %e, "could not renew a job's lease")
                }
            }
        }
    };
    let work = async {
        state.jobs.hold_at(&job.kind).await;
        handle(&state, &job).await
    };
    let result = tokio::select! {
        r = work => r,
        () = heartbeat => {
            tracing::warn!(job = %job.id, kind = %job.kind, "lost a job's lease; another worker has it");
            return;
        }
    };
    let ended = match result {
        Ok(()) => jobs.complete(job.id, &worker).await,
        Err(JobError::Retry(e)) => match state.jobs.policy(job.max_attempts).delay(job.attempts) {
            Some(wait) => {
                tracing::warn!(job = %job.id, kind = %job.kind, attempt = job.attempts, error = %e,
                    wait_ms = wait.as_millis() as u64, "job failed; retrying later");
                let at = Timestamp::now().add_millis(wait.as_millis() as i64);
                jobs.retry_later(job.id, &worker, at, &e).await
            }
            None => {
                tracing::error!(job = %job.id, kind = %job.kind, attempts = job.attempts, error = %e,
                    "job failed its last attempt; kept as failed");
                jobs.fail(job.id, &worker, &e).await
            }
        },
        Err(JobError::Permanent(e)) => {
            tracing::error!(job = %job.id, kind = %job.kind, error = %e, "job failed; kept as failed");
            jobs.fail(job.id, &worker, &e).await
        }
    };
    if let Err(e) = ended {
        tracing::warn!(job = %job.id, error = %e, "could not record a job's end");
    }
}

async fn handle(state: &AppState, job: &Job) -> Result<(), JobError> {
    match job.kind.as_str() {
        WHATSAPP_DELIVERY => {
            let Some(c) = connection(state, job).await? else {
                return Ok(());
            };
            crate::channels::whatsapp::process_delivery(state, &c, &job.payload).await
        }
        TELEGRAM_DELIVERY => {
            let Some(c) = connection(state, job).await? else {
                return Ok(());
            };
            crate::channels::telegram::process_delivery(state, &c, &job.payload).await
        }
        MESSENGER_DELIVERY => {
            let Some(c) = connection(state, job).await? else {
                return Ok(());
            };
            crate::channels::messenger::process_delivery(state, &c, &job.payload).await
        }
        RETELL_DELIVERY | VAPI_DELIVERY | TWILIO_DELIVERY => {
            let Some(c) = connection(state, job).await? else {
                return Ok(());
            };
            crate::channels::voip::process_delivery(state, &c, &job.payload).await
        }
        ANSWER => answer(state, job).await,
        MEDIA_DOWNLOAD => {
            let Some(c) = connection(state, job).await? else {
                return Ok(());
            };
            crate::channels::media::download_later(state, &c, job).await
        }
        VOIP_RECORDING => crate::api::calls::download_recording(state, job).await,
        CALL_TURN => crate::widget::call::run_turn(state, job).await,
        crate::team::REPLY_SEND => crate::team::deliver(state, job).await,
        crate::bulk::BULK_JOB => crate::bulk::run_job(state, job).await,
        other => Err(JobError::Permanent(format!("unknown job kind {other:?}"))),
    }
}

/// The job's connection; `None` (logged: the job has nothing left to do) when it was removed.
async fn connection(state: &AppState, job: &Job) -> Result<Option<ChannelConnection>, JobError> {
    let Some(id) = job.connection_id else {
        return Err(JobError::Permanent("the job names no connection".into()));
    };
    let c = state.store.channels().channel_by_id(id).await?;
    if c.is_none() {
        tracing::info!(job = %job.id, connection = %id, "the connection was removed; job dropped");
    }
    Ok(c)
}

/// The `answer` job: the assistant's turn after the customer's message (once), then the
/// reply on the conversation's channel, unless it went out already.
async fn answer(state: &AppState, job: &Job) -> Result<(), JobError> {
    use crate::assistant::runtime::{TurnOutcome, respond_to};
    let (Some(ws), Some(conversation)) = (job.workspace_id, job.conversation_id) else {
        return Err(JobError::Permanent("the job names no conversation".into()));
    };
    let outcome = match respond_to(state, ws, conversation, job.message_id).await {
        Ok(o) => o,
        Err(e) if e.status == axum::http::StatusCode::NOT_FOUND => {
            tracing::info!(%conversation, "the conversation is gone; nothing to answer");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let m = match outcome {
        TurnOutcome::Answered(m) | TurnOutcome::Failed(m) | TurnOutcome::AlreadyAnswered(m) => m,
        TurnOutcome::NotAnswering(why) => {
            tracing::debug!(%conversation, why, "the assistant does not answer here");
            return Ok(());
        }
    };
    let payload: Value = serde_json::from_str(&job.payload).unwrap_or(Value::Null);
    let reply = &payload["reply"];
    if reply.is_null() {
        return Ok(());
    }
    if m.meta
        .channel
        .as_ref()
        .is_some_and(|c| c.delivery.is_some())
    {
        tracing::debug!(%conversation, "the answer went out already");
        return Ok(());
    }
    let Some(c) = connection(state, job).await? else {
        return Ok(());
    };
    state.jobs.hold_at("answer.send").await;
    let sent = match (c.kind, reply["to"].as_str(), reply["chat"].as_str()) {
        (ChannelKind::Whatsapp, Some(to), _) => {
            crate::channels::whatsapp::reply(state, &c, conversation, to, &m).await
        }
        (ChannelKind::Messenger, Some(to), _) => {
            crate::channels::messenger::reply(state, &c, conversation, to, &m, None).await
        }
        (ChannelKind::Telegram, _, Some(chat)) => {
            crate::channels::telegram::reply(state, &c, chat, &m).await
        }
        _ => return Err(JobError::Permanent(format!("no reply target in {payload}"))),
    };
    if let Err(e) = sent {
        // Recorded on the message (its delivery says failed); not retried.
        tracing::warn!(%conversation, error = %e, "reply not sent");
    }
    Ok(())
}

/// A named lease held in the database ([`parley_store::JobStore::try_lease`]): one holder at
/// a time across every server; renewed while held; free when released or, after a crash,
/// when it expires.
pub struct Lease {
    state: AppState,
    name: String,
    holder: String,
    renew: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Waits until lease `name` is free and takes it. Errors: the store's.
    pub async fn acquire(state: &AppState, name: String) -> Result<Lease, StoreError> {
        let holder = uuid::Uuid::now_v7().simple().to_string();
        let ttl = state.jobs.settings.lease;
        let jobs = state.store.jobs();
        let mut wait = Duration::from_millis(20);
        loop {
            let now = Timestamp::now();
            if jobs
                .try_lease(&name, &holder, now, now.add_millis(ttl.as_millis() as i64))
                .await?
            {
                break;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(250));
        }
        let renew = {
            let (state, name, holder) = (state.clone(), name.clone(), holder.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(ttl / 3).await;
                    let now = Timestamp::now();
                    let until = now.add_millis(ttl.as_millis() as i64);
                    match state
                        .store
                        .jobs()
                        .try_lease(&name, &holder, now, until)
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(lease = %name, "a lease was lost while held");
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(lease = %name, error = %e, "could not renew a lease")
                        }
                    }
                }
            })
        };
        Ok(Lease {
            state: state.clone(),
            name,
            holder,
            renew,
        })
    }

    /// Releases the lease.
    pub async fn release(self) {
        self.renew.abort();
        let jobs = self.state.store.jobs();
        if let Err(e) = jobs.release_lease(&self.name, &self.holder).await {
            tracing::warn!(lease = %self.name, error = %e, "could not release a lease; it expires");
        }
    }
}

/// One line of the queue's state, for `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueGauge {
    /// Job kind (`whatsapp.delivery`, `telegram.delivery`, `answer`, `media.download`).
    pub kind: String,
    /// `queued`, `running` or `failed`.
    pub state: &'static str,
    /// How many jobs.
    pub count: u64,
    /// Age of the oldest of them, in ms.
    pub oldest_age_ms: i64,
    /// Whether the kind is a webhook delivery: these lines are the webhook inbox (depth =
    /// `queued` + `running`, its age the oldest of those).
    pub inbox: bool,
}

/// The job queue's depth and oldest age per kind and state, across every server sharing the
/// database (for `/metrics`: e.g. a gauge `parley_jobs{kind, state}` = `count` and
/// `parley_jobs_oldest_age_seconds{kind, state}` = `oldest_age_ms / 1000`; the webhook inbox
/// is the lines with `inbox` true). Errors: the store's.
pub async fn queue_gauges(state: &AppState) -> Result<Vec<QueueGauge>, StoreError> {
    let now = Timestamp::now();
    Ok(state
        .store
        .jobs()
        .queue_stats()
        .await?
        .into_iter()
        .map(|s| QueueGauge {
            inbox: s.kind.ends_with(".delivery"),
            state: s.state.as_str(),
            count: s.count,
            oldest_age_ms: (now.0 - s.oldest_created_at.0).max(0),
            kind: s.kind,
        })
        .collect())
}

/// A connection's webhook inbox as the API and the dashboard show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct InboxView {
    /// Deliveries received and not yet processed.
    pub pending: u64,
    /// Deliveries given up after their attempts (kept in the queue as `failed`).
    pub failed: u64,
    /// Age of the oldest pending delivery, in ms; `None` when none is pending.
    pub oldest_pending_age_ms: Option<i64>,
}

/// The inbox of connection `c`. A store failure reads as an empty inbox (logged).
pub async fn inbox(state: &AppState, c: &ChannelConnection) -> InboxView {
    let stats = match state.store.jobs().inbox_stats(c.workspace_id, c.id).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(connection = %c.id, error = %e, "could not read the webhook inbox");
            Default::default()
        }
    };
    InboxView {
        pending: stats.pending,
        failed: stats.failed,
        oldest_pending_age_ms: stats
            .oldest_pending_at
            .map(|t| (Timestamp::now().0 - t.0).max(0)),
    }
}
