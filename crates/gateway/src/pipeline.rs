//! [`call`]: the one function every model call passes through.

use portcullis_core::{Permission, PermissionSet};
use portcullis_crypto::Secret;
use portcullis_outbound::{Bytes, Method, Request, StreamingResponse};
use portcullis_service::{model_key, Principal, ServiceError, Services};
use portcullis_store::queries::{environments, integrations};
use portcullis_store::streams::{self, IntelligenceEntry, KeySource, SealedContent};
use portcullis_store::vault::{INTELLIGENCE_INPUT, INTELLIGENCE_OUTPUT};
use portcullis_store::TenantTx;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::accounting::{StreamAccount, Usage};
use crate::error::{ErrorKind, GatewayError};
use crate::gateway::Gateway;
use crate::pricing;
use crate::routing::{Route, Tier, TIER_PREFIX};
use crate::wire;

/// Which provider operation a call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `POST /v1/messages`, JSON or streamed.
    Messages,
    /// `POST /v1/messages/count_tokens`.
    CountTokens,
    /// `GET /v1/models`.
    Models,
}

impl Operation {
    fn path(self) -> &'static str {
        match self {
            Operation::Messages => "/v1/messages",
            Operation::CountTokens => "/v1/messages/count_tokens",
            Operation::Models => "/v1/models",
        }
    }
}

/// A call as the caller made it. `headers` are all of the caller's: the gateway forwards only
/// [`wire::FORWARDED_HEADERS`].
#[derive(Clone)]
pub struct ModelCall {
    pub operation: Operation,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
    pub query: Option<String>,
}

impl std::fmt::Debug for ModelCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelCall")
            .field("operation", &self.operation)
            .field("body", &format_args!("[{} bytes]", self.body.len()))
            .finish_non_exhaustive()
    }
}

/// The provider's answer, relayed: its status and body as it gave them (errors included, in
/// Anthropic's shape), with its retry advice.
#[derive(Debug)]
pub enum Answer {
    Complete {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Server-sent events, relayed as they arrive. Dropping the receiver (the client went
    /// away) does not stop the upstream read: the call is logged at its end.
    Stream {
        status: u16,
        headers: Vec<(String, String)>,
        events: mpsc::Receiver<Bytes>,
    },
}

/// The chosen key and whose it is.
struct Paying {
    key: Secret,
    source: KeySource,
}

/// What every record of the call shares.
#[derive(Clone)]
struct CallRecord {
    entry_id: Uuid,
    /// As requested until routed; then the concrete model called.
    model: String,
    /// The tier the request named, and the price the call is costed at (M3, I2).
    tier: Option<Tier>,
    price: Option<(String, portcullis_service::config::ModelPrice)>,
    source: KeySource,
    input: Vec<u8>,
}

/// The pipeline: authenticate -> preflight (choose the key) -> [budget reserve] -> [route]
/// -> [redact] -> upstream -> [restore] -> [settle] -> log. The bracketed steps are issue 14's
/// sections 3 to 6 and go where they are named below.
pub async fn call(
    gw: &Gateway,
    services: &Services,
    caller: &Principal,
    call: ModelCall,
) -> Result<Answer, GatewayError> {
    // Authenticate: the token names the environment; a refusal here knows no environment.
    let mut tx = caller.enter_token_environment(services).await?;
    tx.require(Permission::ModelsInvoke)?;
    let (model, stream, model_span) = parse(&call)?;
    let record = CallRecord {
        entry_id: Uuid::now_v7(),
        model,
        tier: None,
        price: None,
        source: KeySource::Platform,
        input: call.body.clone(),
    };
    // Preflight: whose key pays. A refusal is on the record too, before any upstream call.
    let paying = match choose_key(gw, services, &mut tx).await {
        Ok(p) => p,
        Err((refusal, source)) => {
            // The models list runs no model and is not logged.
            let record =
                (call.operation != Operation::Models).then_some(CallRecord { source, ..record });
            return Err(refused(services, tx, record.as_ref(), refusal).await?);
        }
    };
    let mut record = CallRecord {
        source: paying.source,
        ..record
    };
    // Tier routing (M3) and pricing (I2): the concrete model, allowed and priced, or a 400
    // on the record before anything leaves.
    let body = match route(gw, &call, &mut record, model_span) {
        Ok(body) => body,
        Err(refusal) => return Err(refused(services, tx, Some(&record), refusal).await?),
    };
    let env = tx.environment_id();
    tx.commit().await.map_err(GatewayError::from)?;
    // [budget reserve (section 3): reserve the worst case here, settle after the answer]
    // [PII redaction (section 5), opt-out/ZDR (section 6): here, on `body`, before anything
    //  leaves]
    let request = upstream_request(gw, &call, &body, &paying.key);
    drop(paying);
    let logger = Logger {
        services: services.clone(),
        caller: caller.clone(),
        env,
        record,
        operation: call.operation,
    };
    let response = match gw.inner.client.open(&request, gw.inner.stream).await {
        Ok(r) => r,
        Err(e) => {
            let err = GatewayError {
                detail: Some(e.to_string()),
                ..GatewayError::new(
                    ErrorKind::Upstream,
                    "the model provider could not be reached",
                )
            };
            logger
                .finish(None, Usage::default(), false, Some(&err.message), None)
                .await;
            return Err(err);
        }
    };
    let upstream_id = response.header("request-id").map(str::to_owned);
    let headers = wire::relayed(&response.headers);
    let status = response.status;
    if response.is_success()
        && stream
        && response
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"))
    {
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(relay(response, tx, logger, upstream_id));
        return Ok(Answer::Stream {
            status,
            headers,
            events: rx,
        });
    }
    let full = match response.collect().await {
        Ok(r) => r,
        Err(e) => {
            let err = GatewayError {
                detail: Some(e.to_string()),
                ..GatewayError::new(ErrorKind::Upstream, "the model provider's answer broke off")
            };
            logger
                .finish(
                    None,
                    Usage::default(),
                    false,
                    Some(&err.message),
                    upstream_id,
                )
                .await;
            return Err(err);
        }
    };
    let body: Value = serde_json::from_slice(&full.body).unwrap_or(Value::Null);
    if matches!(status, 401 | 403) {
        // Never retried on another key: the environment's own key failing is its answer.
        let reason = provider_message(&body);
        let whose = match logger.record.source {
            KeySource::Byok => "this environment's own model key",
            KeySource::Platform | KeySource::SelfHosted => "the platform's model key",
        };
        let err = GatewayError::new(
            ErrorKind::KeyRejected,
            format!("the model provider refused {whose} ({status}): {reason}"),
        );
        logger
            .finish(
                Some(body),
                Usage::default(),
                false,
                Some(&err.message),
                upstream_id,
            )
            .await;
        return Err(err);
    }
    let success = full.is_success();
    let error = (!success).then(|| provider_message(&body));
    if logger.operation == Operation::Models && status == 200 {
        if let Some(listed) = with_tiers(gw, body) {
            return Ok(Answer::Complete {
                status,
                headers,
                body: listed,
            });
        }
        return Ok(Answer::Complete {
            status,
            headers,
            body: full.body.to_vec(),
        });
    }
    if logger.operation != Operation::Models {
        let usage = Usage::of_message(&body);
        logger
            .finish(Some(body), usage, success, error.as_deref(), upstream_id)
            .await;
    }
    Ok(Answer::Complete {
        status,
        headers,
        body: full.body.to_vec(),
    })
}

/// The request's model, whether it streams, and where the model's value is in the body; the
/// body must be a JSON object naming `model` once (it is forwarded as given, unknown fields
/// included, with only the model's value rewritten).
fn parse(call: &ModelCall) -> Result<(String, bool, (usize, usize)), GatewayError> {
    if call.operation == Operation::Models {
        return Ok(("-".to_owned(), false, (0, 0)));
    }
    let v: Value = serde_json::from_slice(&call.body).map_err(|e| {
        GatewayError::new(
            ErrorKind::InvalidRequest,
            format!("the body is not JSON: {e}"),
        )
    })?;
    let Some(obj) = v.as_object() else {
        return Err(GatewayError::new(
            ErrorKind::InvalidRequest,
            "the body must be a JSON object",
        ));
    };
    let model = match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() && m.len() <= 200 => m.clone(),
        _ => {
            return Err(GatewayError::new(
                ErrorKind::InvalidRequest,
                "model: a model name is required",
            ))
        }
    };
    let span = match wire::model_spans(&call.body).as_deref() {
        Some([span]) => *span,
        Some(_) => {
            return Err(GatewayError::new(
                ErrorKind::InvalidRequest,
                "model: given more than once; name it once",
            ))
        }
        None => {
            return Err(GatewayError::new(
                ErrorKind::InvalidRequest,
                "the body must be a JSON object",
            ))
        }
    };
    let stream = call.operation == Operation::Messages
        && match obj.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(GatewayError::new(
                    ErrorKind::InvalidRequest,
                    "stream: must be a boolean",
                ))
            }
        };
    Ok((model, stream, span))
}

/// M3, I2: routes the call (tier or allowed model, priced unless the operator allows
/// otherwise) and rewrites the body's `model` to the concrete model, every other byte kept.
/// On a refusal the record is left as requested, to log the refusal under.
fn route(
    gw: &Gateway,
    call: &ModelCall,
    record: &mut CallRecord,
    span: (usize, usize),
) -> Result<Vec<u8>, GatewayError> {
    if call.operation == Operation::Models {
        return Ok(Vec::new());
    }
    let priced_only = call.operation == Operation::Messages;
    let Route { tier, model, price } = gw.inner.router.route(&record.model, priced_only)?;
    let body = wire::replace_span(&call.body, span, &model);
    record.model = model;
    record.tier = tier;
    // count_tokens costs nothing: no price, no version.
    record.price = if priced_only { price } else { None };
    Ok(body)
}

/// The upstream's models list with the tiers first: `tier:fast` and the others, each saying
/// which model it maps to. `None`: not a list this can extend (relayed as it came).
fn with_tiers(gw: &Gateway, mut body: Value) -> Option<Vec<u8>> {
    let data = body.get_mut("data")?.as_array_mut()?;
    let tiers: Vec<Value> = gw
        .inner
        .router
        .tiers()
        .map(|(tier, model)| {
            serde_json::json!({
                "type": "model",
                "id": format!("{TIER_PREFIX}{}", tier.as_str()),
                "display_name": format!("Portcullis tier {} (routes to {model})", tier.as_str()),
                "created_at": "1970-01-01T00:00:00Z",
            })
        })
        .collect();
    data.splice(0..0, tiers);
    serde_json::to_vec(&body).ok()
}

/// M1, M2: the environment's own key if it has one (never another's: read in its own
/// transaction, under RLS); else the platform key while the environment is in its trial;
/// else `connect_your_key`. A refusal names the key source it refused.
async fn choose_key(
    gw: &Gateway,
    services: &Services,
    tx: &mut TenantTx,
) -> Result<Paying, (GatewayError, KeySource)> {
    let byok = |e: GatewayError| (e, KeySource::Byok);
    let stored = integrations::model_key(tx)
        .await
        .map_err(|e| byok(e.into()))?;
    if let Some(stored) = stored {
        if stored.provider != "anthropic" {
            return Err(byok(GatewayError::new(
                ErrorKind::Permission,
                format!(
                    "this environment's model key is for `{}`; the gateway speaks to Anthropic only",
                    stored.provider
                ),
            )));
        }
        let key = model_key::model_key_secret(services, tx)
            .await
            .map_err(|e| byok(e.into()))?
            .ok_or_else(|| byok(ServiceError::NotFound.into()))?;
        return Ok(Paying {
            key,
            source: KeySource::Byok,
        });
    }
    let env = environments::get(tx)
        .await
        .map_err(|e| (e.into(), KeySource::Platform))?;
    let in_trial = OffsetDateTime::now_utc() < env.created_at + gw.inner.trial;
    match (&gw.inner.platform_key, in_trial) {
        (Some(key), true) => Ok(Paying {
            key: key.clone(),
            source: KeySource::Platform,
        }),
        (platform, _) => {
            let why = if platform.is_none() {
                "this Portcullis installation has no platform model key"
            } else {
                "this environment's trial of the platform model key has ended"
            };
            let refusal = GatewayError {
                console_url: Some(gw.inner.console_url.clone()),
                ..GatewayError::new(
                    ErrorKind::ConnectYourKey,
                    format!(
                        "{why}: connect your own Anthropic key to keep calling models (set it at {})",
                        gw.inner.console_url
                    ),
                )
            };
            Err((refusal, KeySource::Platform))
        }
    }
}

fn upstream_request(gw: &Gateway, call: &ModelCall, body: &[u8], key: &Secret) -> Request {
    let target = format!(
        "{}{}",
        call.operation.path(),
        wire::query(call.query.as_deref())
    );
    let method = match call.operation {
        Operation::Models => Method::GET,
        Operation::Messages | Operation::CountTokens => Method::POST,
    };
    let mut request = Request::new(method, gw.inner.base.clone(), target)
        .with_header("x-api-key", key.expose())
        .with_header("user-agent", "portcullis-gateway");
    for (name, value) in wire::forwarded(&call.headers) {
        if call.operation == Operation::Models && name == "content-type" {
            continue;
        }
        request = request.with_header(name, value);
    }
    if call.operation != Operation::Models {
        if request.header("content-type").is_none() {
            request = request.with_header("content-type", "application/json");
        }
        request = request.with_body(body.to_vec());
    }
    request
}

/// The provider's own error message, bounded and printable.
fn provider_message(body: &Value) -> String {
    body["error"]["message"]
        .as_str()
        .map(portcullis_outbound::sanitize_remote_message)
        .unwrap_or_else(|| "no reason given".to_owned())
}

/// Relays a stream to the client and, whatever the client does, reads the upstream to its
/// end (bounded by the stream limits) so the record holds the final usage.
async fn relay(
    mut response: StreamingResponse,
    tx: mpsc::Sender<Bytes>,
    logger: Logger,
    upstream_id: Option<String>,
) {
    let mut account = StreamAccount::default();
    let mut client_gone = false;
    let mut broken = None;
    loop {
        match response.chunk().await {
            Ok(Some(bytes)) => {
                account.feed(&bytes);
                if !client_gone && tx.send(bytes).await.is_err() {
                    client_gone = true;
                }
            }
            Ok(None) => break,
            Err(e) => {
                broken = Some(e.to_string());
                break;
            }
        }
    }
    if broken.is_some() && !client_gone {
        // The SDKs raise on an `error` event; a silently truncated stream would look complete.
        let event = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"the model provider's stream broke off\"}}\n\n";
        let _ = tx.send(Bytes::from_static(event.as_bytes())).await;
    }
    let success = account.stopped && account.error.is_none() && broken.is_none();
    let error = account
        .error
        .clone()
        .or_else(|| broken.map(|_| "the model provider's stream broke off".to_owned()))
        .or_else(|| (!account.stopped).then(|| "the stream ended without message_stop".to_owned()))
        .or_else(|| {
            client_gone.then(|| "the client went away; the stream was read to its end".to_owned())
        });
    logger
        .finish(
            Some(account.message()),
            account.usage,
            success,
            error.as_deref(),
            upstream_id,
        )
        .await;
    // The client's stream ends only now: once it has seen the end, the call is on the record.
    drop(tx);
}

/// Writes the call's record after the upstream answered, in a transaction of its own.
struct Logger {
    services: Services,
    caller: Principal,
    env: portcullis_core::EnvironmentId,
    record: CallRecord,
    operation: Operation,
}

impl Logger {
    async fn finish(
        &self,
        output: Option<Value>,
        usage: Usage,
        success: bool,
        error: Option<&str>,
        upstream_id: Option<String>,
    ) {
        if self.operation == Operation::Models {
            return;
        }
        let outcome = async {
            // As the caller again; a token revoked during its own call is recorded by the
            // system, so the call is on the record either way.
            let mut tx = match self.caller.enter_token_environment(&self.services).await {
                Ok(tx) => tx,
                Err(_) => {
                    self.services
                        .store()
                        .tenant_as_system(self.env, PermissionSet::EMPTY, self.caller.meta.clone())
                        .await?
                }
            };
            log(
                &self.services,
                &mut tx,
                &self.record,
                output,
                usage,
                success,
                error,
                upstream_id,
            )
            .await?;
            tx.commit().await.map_err(GatewayError::from)
        }
        .await;
        if let Err(e) = outcome {
            tracing::error!(environment = %self.env, entry = %self.record.entry_id, error = ?e, "could not record a model call in the intelligence log");
        }
    }
}

fn tokens(n: i64) -> i32 {
    i32::try_from(n.max(0)).unwrap_or(i32::MAX)
}

/// A refusal before anything left: recorded (when `record` is given) with no usage and no
/// upstream request, the transaction committed, and the refusal handed back as the answer.
async fn refused(
    services: &Services,
    mut tx: TenantTx,
    record: Option<&CallRecord>,
    refusal: GatewayError,
) -> Result<GatewayError, GatewayError> {
    if let Some(record) = record {
        log(
            services,
            &mut tx,
            record,
            None,
            Usage::default(),
            false,
            Some(&refusal.message),
            None,
        )
        .await?;
    }
    tx.commit().await.map_err(GatewayError::from)?;
    Ok(refusal)
}

/// One intelligence-log row: prompt and output sealed under the environment's data key.
#[allow(clippy::too_many_arguments)]
async fn log(
    services: &Services,
    tx: &mut TenantTx,
    record: &CallRecord,
    output: Option<Value>,
    usage: Usage,
    success: bool,
    error: Option<&str>,
    upstream_request_id: Option<String>,
) -> Result<Uuid, GatewayError> {
    let env = tx.environment_id();
    let ring = services.vault().ring(tx).await;
    let ring = services.keyed(env, ring).await?;
    let row = record.entry_id.to_string();
    let sealed = services
        .vault()
        .seal(tx, &ring, &INTELLIGENCE_INPUT, &row, &record.input)
        .await;
    let (input, version) = services.keyed(env, sealed).await?;
    let output = match output {
        Some(v) => {
            let bytes = serde_json::to_vec(&v).unwrap_or_default();
            let sealed = services
                .vault()
                .seal(tx, &ring, &INTELLIGENCE_OUTPUT, &row, &bytes)
                .await;
            Some(services.keyed(env, sealed).await?.0)
        }
        None => None,
    };
    let id = tx
        .log_intelligence(IntelligenceEntry {
            entry_id: record.entry_id,
            workflow_id: None,
            model: record.model.clone(),
            provider: "anthropic".to_owned(),
            key_source: record.source,
            content: SealedContent {
                input,
                output,
                key_version: version,
            },
            input_tokens: tokens(usage.input_tokens),
            output_tokens: tokens(usage.output_tokens),
            cache_creation_tokens: tokens(usage.cache_creation_input_tokens),
            cache_read_tokens: tokens(usage.cache_read_input_tokens),
            cost_micros: record
                .price
                .as_ref()
                .map_or(0, |(_, p)| pricing::cost_micros(p, &usage)),
            tier: record.tier.map(Tier::as_str),
            pricing_version: record.price.as_ref().map(|(v, _)| v.clone()),
            success,
            error: error.map(str::to_owned),
            upstream_request_id,
        })
        .await?;
    Ok(id)
}

/// An intelligence-log row with its content opened.
#[derive(Clone, Debug)]
pub struct LoggedCall {
    pub entry_id: Uuid,
    pub model: String,
    pub provider: Option<String>,
    pub key_source: String,
    pub actor_type: String,
    pub input: Option<Value>,
    pub output: Option<Value>,
    pub usage: Usage,
    /// The tier the request named (`fast`, ...), `model` being the concrete one called.
    pub tier: Option<String>,
    pub cost_micros: i64,
    pub pricing_version: Option<String>,
    pub success: bool,
    pub error: Option<String>,
    pub request_id: Option<String>,
    pub upstream_request_id: Option<String>,
}

/// The environment's intelligence log, oldest first, content opened (needs `audit.read`).
/// What the log routes (section 8) will list.
pub async fn open_logged(
    services: &Services,
    tx: &mut TenantTx,
) -> Result<Vec<LoggedCall>, GatewayError> {
    let env = tx.environment_id();
    let rows = streams::intelligence_rows(tx, None).await?;
    let mut out = vec![];
    for r in rows {
        let open = |v: Option<Vec<u8>>, column| (v, column);
        let mut opened = [None, None];
        for (i, (ct, column)) in [
            open(r.input_ciphertext.clone(), &INTELLIGENCE_INPUT),
            open(r.output_ciphertext.clone(), &INTELLIGENCE_OUTPUT),
        ]
        .into_iter()
        .enumerate()
        {
            if let Some(ct) = ct {
                let ring = services.vault().ring(tx).await;
                let ring = services.keyed(env, ring).await?;
                let plain = services
                    .vault()
                    .open(tx, &ring, column, &r.entry_id.to_string(), &ct)
                    .await;
                let plain = services.keyed(env, plain).await?;
                opened[i] = Some(serde_json::from_slice(&plain).unwrap_or(Value::Null));
            }
        }
        let [input, output] = opened;
        out.push(LoggedCall {
            entry_id: r.entry_id,
            model: r.model,
            provider: r.provider,
            key_source: r.key_source,
            actor_type: r.actor_type,
            input: input.or(r.input),
            output: output.or(r.output),
            usage: Usage {
                input_tokens: r.input_tokens.into(),
                output_tokens: r.output_tokens.into(),
                cache_creation_input_tokens: r.cache_creation_tokens.into(),
                cache_read_input_tokens: r.cache_read_tokens.into(),
            },
            tier: r.tier,
            cost_micros: r.cost_micros,
            pricing_version: r.pricing_version,
            success: r.success,
            error: r.error,
            request_id: r.request_id,
            upstream_request_id: r.upstream_request_id,
        });
    }
    Ok(out)
}
