//! The inspection API's routes and answers. The listener's thread answers what it holds (the
//! page, the history) and hands the questions for the actors to the `inspect-http` thread,
//! which asks them with a deadline, one question at a time, and samples the history every
//! second between questions.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::{MailboxError, Message, Recipient};
use anyhow::Context as _;
use coordinator_core::inspect::history::{Sample, SAMPLE_INTERVAL};
use coordinator_core::inspect::view::{
    rfc3339, seconds, ErrorAnswer, ExecutionAnswer, QueueAnswer,
};
use coordinator_core::inspect::{DEFAULT_LIMIT, MAX_LIMIT};
use coordinator_core::pool::{PoolStats, Resources};
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::warn;

use crate::actors::queue::{InQueue, QueueListing, QueueLookup};
use crate::actors::resource::{AllocationLookup, PoolStatsQuery};
use crate::actors::scheduler::SchedulerStateQuery;
use crate::clock::now_millis;
use crate::inspect::page::{self, Asset};
use crate::inspect::{InspectPeers, Inspection};
use crate::telemetry::Readiness;

/// How long an actor may take to answer one question before the API answers 503.
const ACTOR_TIMEOUT: Duration = Duration::from_secs(2);

/// Questions waiting for the `inspect-http` thread, at most; beyond, the API answers 503.
const PENDING_QUESTIONS: usize = 64;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A file of the status page.
    Page(Asset),
    /// `GET /v1/history`.
    History,
    /// A question for the actors.
    Ask(Question),
    /// A question the API does not take: its status and why.
    Refused {
        /// 400, 404 or 405.
        status: u16,
        /// What was wrong, in a sentence.
        error: String,
    },
    /// Nothing of the API's (the listener answers its plain 404).
    NotFound,
}

/// What the `inspect-http` thread asks the actors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Question {
    /// `GET /v1/queue?limit=N`.
    Queue {
        /// How many executions to list.
        limit: usize,
    },
    /// `GET /v1/executions/{id}`.
    Execution(String),
}

fn refused(status: u16, error: impl Into<String>) -> Route {
    Route::Refused {
        status,
        error: error.into(),
    }
}

/// Decodes `%XX` escapes of a URL path segment; `None` when one is malformed or the result
/// is not UTF-8.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The `limit` of `/v1/queue` from its query string.
fn queue_limit(query: Option<&str>) -> Result<usize, String> {
    let mut limit = None;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "limit" {
            return Err(format!(
                "unknown query parameter {key:?}: /v1/queue takes only limit"
            ));
        }
        if limit.is_some() {
            return Err("limit is given more than once".to_owned());
        }
        let value = percent_decode(value).unwrap_or_else(|| value.to_owned());
        match value.parse::<usize>() {
            Ok(n) if n <= MAX_LIMIT => limit = Some(n),
            _ => {
                return Err(format!(
                    "limit must be a whole number from 0 to {MAX_LIMIT}, not {value:?}"
                ))
            }
        }
    }
    Ok(limit.unwrap_or(DEFAULT_LIMIT))
}

/// What `method` on `url` asks for.
pub fn route(method: &tiny_http::Method, url: &str) -> Route {
    let (path, query) = match url.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (url, None),
    };
    let api = path.starts_with("/v1/") || path == "/v1";
    let asset = page::asset(path);
    if !api && asset.is_none() {
        return Route::NotFound;
    }
    if *method != tiny_http::Method::Get {
        return refused(405, format!("{path} answers GET only, not {method}"));
    }
    if let Some(asset) = asset {
        return Route::Page(asset);
    }
    let no_query = || match query.filter(|q| !q.is_empty()) {
        Some(q) => Err(refused(
            400,
            format!("{path} takes no query parameters, not {q:?}"),
        )),
        None => Ok(()),
    };
    match path.trim_end_matches('/') {
        "/v1/history" => no_query().err().unwrap_or(Route::History),
        "/v1/queue" => match queue_limit(query) {
            Ok(limit) => Route::Ask(Question::Queue { limit }),
            Err(error) => refused(400, error),
        },
        "/v1/executions" => refused(400, "name the execution: /v1/executions/{id}"),
        p => match p.strip_prefix("/v1/executions/") {
            Some(id) if !id.contains('/') => match (percent_decode(id), no_query()) {
                (_, Err(refusal)) => refusal,
                (Some(id), Ok(())) => Route::Ask(Question::Execution(id)),
                (None, Ok(())) => refused(400, format!("{id:?} is not a valid escaped id")),
            },
            _ => refused(
                404,
                format!(
                    "no such endpoint {path}: the API has /v1/queue, /v1/executions/{{id}} \
                     and /v1/history"
                ),
            ),
        },
    }
}

/// Answers `request` with `status` and `body` of `content_type`, never cached.
fn respond(request: tiny_http::Request, status: u16, body: String, content_type: &str) {
    let headers = [
        ("Content-Type", content_type),
        ("Cache-Control", "no-store"),
    ]
    .into_iter()
    .filter_map(|(k, v)| tiny_http::Header::from_bytes(k, v).ok());
    let mut response = tiny_http::Response::from_string(body).with_status_code(status);
    for header in headers {
        response.add_header(header);
    }
    if let Err(e) = request.respond(response) {
        warn!(error = %e, "Inspection response failed.");
    }
}

/// An answer of the API: its status and JSON.
struct Answered {
    status: u16,
    json: String,
}

impl Answered {
    fn ok(answer: &impl Serialize) -> Self {
        Self::with(200, answer)
    }

    fn with(status: u16, answer: &impl Serialize) -> Self {
        match serde_json::to_string(answer) {
            Ok(json) => Self { status, json },
            Err(e) => Self::error(500, format!("the answer could not be written: {e}")),
        }
    }

    fn error(status: u16, error: String) -> Self {
        let json = serde_json::to_string(&ErrorAnswer { error })
            .unwrap_or_else(|_| r#"{"error":"unknown"}"#.to_owned());
        Self { status, json }
    }

    fn send(self, request: tiny_http::Request) {
        respond(request, self.status, self.json, "application/json");
    }
}

/// The API side of the listener: what it answers itself, and the way to the `inspect-http`
/// thread for the rest.
pub struct Api {
    inspection: Arc<Inspection>,
    questions: mpsc::Sender<(Question, tiny_http::Request)>,
}

impl Api {
    /// Starts the `inspect-http` thread, which answers from `inspection` and says why it
    /// cannot from `readiness`.
    pub fn start(inspection: Arc<Inspection>, readiness: Arc<Readiness>) -> anyhow::Result<Self> {
        let (questions, pending) = mpsc::channel(PENDING_QUESTIONS);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .context("the inspection thread's runtime")?;
        let answers = Answers {
            inspection: inspection.clone(),
            readiness,
        };
        std::thread::Builder::new()
            .name("inspect-http".into())
            .spawn(move || runtime.block_on(answers.run(pending)))
            .context("spawning the inspection thread")?;
        Ok(Self {
            inspection,
            questions,
        })
    }

    /// Answers `request`, or hands it on; gives it back when it is nothing of the API's (the
    /// caller answers 404 then).
    pub fn serve(&self, request: tiny_http::Request) -> Option<tiny_http::Request> {
        match route(request.method(), request.url()) {
            Route::NotFound => return Some(request),
            Route::Page(asset) => {
                respond(request, 200, asset.body.to_owned(), asset.content_type);
            }
            Route::History => {
                let history = self.inspection.history().answer(now_millis());
                Answered::ok(&history).send(request);
            }
            Route::Refused { status, error } => Answered::error(status, error).send(request),
            Route::Ask(question) => {
                if let Err(e) = self.questions.try_send((question, request)) {
                    let (request, why) = match e {
                        mpsc::error::TrySendError::Full((_, r)) => {
                            (r, "too many questions are waiting; try again")
                        }
                        mpsc::error::TrySendError::Closed((_, r)) => {
                            (r, "the inspection thread has stopped")
                        }
                    };
                    Answered::error(503, why.to_owned()).send(request);
                }
            }
        }
        None
    }
}

/// Why the actors gave no answer.
fn unanswered(e: Option<MailboxError>) -> Answered {
    let why = match e {
        Some(_) => "the coordinator's actors are stopping; try again".to_owned(),
        None => format!(
            "the coordinator's actors did not answer within {}; try again",
            humantime::format_duration(ACTOR_TIMEOUT)
        ),
    };
    Answered::error(503, why)
}

/// Asks `to` with a deadline.
async fn ask<M>(to: &Recipient<M>, question: M) -> Result<M::Result, Answered>
where
    M: Message + Send + 'static,
    M::Result: Send,
{
    match tokio::time::timeout(ACTOR_TIMEOUT, to.send(question)).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(unanswered(Some(e))),
        Err(_) => Err(unanswered(None)),
    }
}

/// The `inspect-http` thread's side.
struct Answers {
    inspection: Arc<Inspection>,
    readiness: Arc<Readiness>,
}

impl Answers {
    /// Answers questions as they come and samples the history every second, until the
    /// listener is gone.
    async fn run(self, mut pending: mpsc::Receiver<(Question, tiny_http::Request)>) {
        let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                question = pending.recv() => match question {
                    Some((question, request)) => self.answer(question).await.send(request),
                    None => break,
                },
                _ = tick.tick() => self.sample().await,
            }
        }
    }

    /// The running tree's actors, or why there are none.
    fn peers(&self) -> Result<InspectPeers, Answered> {
        self.inspection.peers().ok_or_else(|| {
            let why = if self.readiness.standby.load(Ordering::Relaxed) {
                "this instance is a standby: the instance that owns the queue and pool answers"
            } else if self.readiness.recovering.load(Ordering::Relaxed) {
                "the coordinator is recovering: its actors are being rebuilt from the \
                 committed state; try again shortly"
            } else {
                "the coordinator is not running its actors (starting or stopping); try again \
                 shortly"
            };
            Answered::error(503, why.to_owned())
        })
    }

    async fn answer(&self, question: Question) -> Answered {
        let answered = match question {
            Question::Queue { limit } => self.queue(limit).await,
            Question::Execution(id) => self.execution(id).await,
        };
        answered.unwrap_or_else(|refusal| refusal)
    }

    /// `GET /v1/queue`.
    async fn queue(&self, limit: usize) -> Result<Answered, Answered> {
        let peers = self.peers()?;
        let pool: PoolStats = ask(&peers.pool, PoolStatsQuery).await?;
        let free = pool.available;
        let listing = ask(&peers.listing, QueueListing { limit, free }).await?;
        let scheduler = ask(&peers.scheduler, SchedulerStateQuery).await?;
        Ok(Answered::ok(&QueueAnswer {
            at: rfc3339(now_millis()),
            depth: listing.depth.into(),
            queued: listing.queued,
            being_scheduled: listing.being_scheduled,
            pool: pool.into(),
            scheduler,
            limit,
            executions: listing.executions,
        }))
    }

    /// `GET /v1/executions/{id}`: asked along the way an execution goes (queue, pool, end),
    /// so one that moves on between two questions is found at the next.
    async fn execution(&self, execution_id: String) -> Result<Answered, Answered> {
        let peers = self.peers()?;
        let free = ask(&peers.pool, PoolStatsQuery).await?.available;
        let lookup = QueueLookup {
            execution_id: execution_id.clone(),
            free,
        };
        match ask(&peers.lookup, lookup).await? {
            InQueue::Queued(waiting) => {
                return Ok(Answered::ok(&ExecutionAnswer::Queued(*waiting)))
            }
            InQueue::BeingScheduled => {
                return Ok(Answered::ok(&ExecutionAnswer::Scheduling { execution_id }))
            }
            InQueue::Absent => {}
        }
        let held = AllocationLookup {
            execution_id: execution_id.clone(),
        };
        if let Some(held) = ask(&peers.allocation, held).await? {
            let now = now_millis();
            return Ok(Answered::ok(&ExecutionAnswer::Active {
                execution_id,
                resources: held.resources.into(),
                since: held.since.map(rfc3339),
                running_seconds: held
                    .since
                    .map(|since| seconds(Duration::from_millis(now.saturating_sub(since)))),
                ends_by: held.ends_by.map(rfc3339),
            }));
        }
        if let Some(finish) = self.inspection.finishes.get(&execution_id) {
            return Ok(Answered::ok(&ExecutionAnswer::Finished {
                execution_id,
                outcome: finish.outcome,
                finished_at: rfc3339(finish.at),
                message: finish.message,
            }));
        }
        Err(Answered::error(
            404,
            format!("no execution {execution_id} is queued, active or recently finished"),
        ))
    }

    /// One sample of the history, when a tree runs.
    async fn sample(&self) {
        let Some(peers) = self.inspection.peers() else {
            return;
        };
        let Ok(pool) = ask(&peers.pool, PoolStatsQuery).await else {
            return;
        };
        let head = QueueListing {
            limit: 0,
            free: Resources::default(),
        };
        let Ok(listing) = ask(&peers.listing, head).await else {
            return;
        };
        self.inspection.sampled(Sample {
            at: now_millis(),
            depth: listing.depth,
            used: pool.used,
            total: pool.total,
            active_allocations: pool.active_allocations,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiny_http::Method;

    fn get(url: &str) -> Route {
        route(&Method::Get, url)
    }

    #[test]
    fn routes_take_the_limit_an_id_and_nothing_else() {
        let queue = |limit| Route::Ask(Question::Queue { limit });
        let execution = |id: &str| Route::Ask(Question::Execution(id.into()));
        assert_eq!(get("/v1/queue"), queue(DEFAULT_LIMIT));
        assert_eq!(get("/v1/queue?limit=7"), queue(7));
        assert_eq!(get("/v1/queue?limit=0"), queue(0));
        assert_eq!(get("/v1/queue/"), queue(DEFAULT_LIMIT));
        assert_eq!(get("/v1/history"), Route::History);
        assert_eq!(get("/v1/executions/e-1"), execution("e-1"));
        assert_eq!(get("/v1/executions/a%20b%2Fc"), execution("a b/c"));
        assert_eq!(get("/metrics"), Route::NotFound);
        assert_eq!(get("/nothing"), Route::NotFound);
        assert!(matches!(get("/"), Route::Page(_)));
    }

    #[test]
    fn bad_questions_are_refused_saying_why() {
        let status = |url: &str| match get(url) {
            Route::Refused { status, error } => (status, error),
            other => panic!("{url}: {other:?}"),
        };
        for bad in ["abc", "-1", "1001", "1.5", ""] {
            let (code, error) = status(&format!("/v1/queue?limit={bad}"));
            assert_eq!(code, 400);
            assert!(error.contains("from 0 to 1000"), "{error}");
        }
        assert_eq!(status("/v1/queue?limit=1&limit=2").0, 400);
        assert!(status("/v1/queue?limt=3").1.contains("\"limt\""));
        assert_eq!(status("/v1/executions").0, 400);
        assert_eq!(status("/v1/executions/a/b").0, 404);
        assert_eq!(status("/v1/executions/%zz").0, 400);
        assert_eq!(status("/v1/history?x=1").0, 400);
        assert_eq!(status("/v1/nothing").0, 404);
        let (code, error) = match route(&Method::Post, "/v1/queue") {
            Route::Refused { status, error } => (status, error),
            other => panic!("{other:?}"),
        };
        assert_eq!(code, 405);
        assert!(error.contains("GET"), "{error}");
    }
}
