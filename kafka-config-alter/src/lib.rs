//! Kafka's IncrementalAlterConfigs (KIP-339) on a topic, through librdkafka.
//!
//! Why this crate exists: rust-rdkafka 0.39 wraps only the older AlterConfigs, which replaces a
//! topic's whole configuration (a topic's `cleanup.policy` would be reset by setting its
//! `retention.ms`) and which the embedded broker (Nisshi 0.8) does not implement at all. librdkafka
//! has the incremental call; this crate makes it, on the admin client the caller already has (so
//! the same SASL/TLS settings apply). It is the workspace's only `unsafe` code, kept to one file
//! and one operation, each block with its reason.
#![allow(unsafe_code)]

use std::ffi::{c_char, CStr, CString};
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::bindings as rd;
use rdkafka::client::ClientContext;

/// Why the request as a whole failed (each topic's own outcome is in the `Ok` list).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AlterError {
    #[error("a topic name or setting contains a NUL byte")]
    Nul,
    #[error("librdkafka refused setting {name}: {message}")]
    Refused { name: String, message: String },
    #[error("no answer from the brokers within {0:?}")]
    TimedOut(Duration),
    #[error("the brokers refused the request: {0}")]
    Request(String),
}

/// One topic's outcome: `Err` holds the broker's reason.
pub type TopicOutcome = (String, Result<(), String>);

/// Sets (`SET`, leaving every other setting as it is) `settings` on each of `topics`, waiting
/// at most `timeout`. Blocking: call it off the async runtime (`spawn_blocking`).
pub fn set_topic_configs<C: ClientContext>(
    admin: &AdminClient<C>,
    topics: &[&str],
    settings: &[(&str, &str)],
    timeout: Duration,
) -> Result<Vec<TopicOutcome>, AlterError> {
    if topics.is_empty() {
        return Ok(Vec::new());
    }
    let rk = admin.inner().native_ptr();
    let mut resources = Resources(Vec::with_capacity(topics.len()));
    for topic in topics {
        let name = CString::new(*topic).map_err(|_| AlterError::Nul)?;
        // SAFETY: `name` is a valid NUL-terminated string for the call; librdkafka copies it.
        let resource = unsafe {
            rd::rd_kafka_ConfigResource_new(
                rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
                name.as_ptr(),
            )
        };
        if resource.is_null() {
            // librdkafka refuses an empty or invalid name this way; never pass null on.
            return Err(AlterError::Request(format!("invalid topic name {topic:?}")));
        }
        resources.0.push(resource);
        for (key, value) in settings {
            let key_c = CString::new(*key).map_err(|_| AlterError::Nul)?;
            let value_c = CString::new(*value).map_err(|_| AlterError::Nul)?;
            // SAFETY: `resource` was just made and is owned by `resources`; the strings are
            // valid for the call and copied by librdkafka.
            let error = unsafe {
                rd::rd_kafka_ConfigResource_add_incremental_config(
                    resource,
                    key_c.as_ptr(),
                    rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET,
                    value_c.as_ptr(),
                )
            };
            if !error.is_null() {
                // SAFETY: a non-null error from librdkafka, read then destroyed once.
                let message = unsafe {
                    let message = text(rd::rd_kafka_error_string(error));
                    rd::rd_kafka_error_destroy(error);
                    message
                };
                return Err(AlterError::Refused {
                    name: (*key).to_owned(),
                    message,
                });
            }
        }
    }
    let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `rk` is the live handle of `admin`, which outlives this function; the options
    // and the queue are destroyed by their guards below, after the event they produce.
    let options = Options(unsafe {
        rd::rd_kafka_AdminOptions_new(
            rk,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS,
        )
    });
    let mut errstr = [0 as c_char; 256];
    // SAFETY: `options` is valid; `errstr` is a writable buffer of the size given.
    unsafe {
        rd::rd_kafka_AdminOptions_set_request_timeout(
            options.0,
            millis,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
    }
    // SAFETY: as above.
    let queue = Queue(unsafe { rd::rd_kafka_queue_new(rk) });
    // SAFETY: every pointer is valid; librdkafka copies the resources (ours are freed by
    // `resources`) and posts one result event on `queue`.
    unsafe {
        rd::rd_kafka_IncrementalAlterConfigs(
            rk,
            resources.0.as_mut_ptr(),
            resources.0.len(),
            options.0,
            queue.0,
        );
    }
    // A little longer than the request's own timeout, so librdkafka reports its timeout first.
    let wait = millis.saturating_add(1_000);
    // SAFETY: `queue` is valid; the event returned (if any) is owned by `Event`.
    let event = Event(unsafe { rd::rd_kafka_queue_poll(queue.0, wait) });
    if event.0.is_null() {
        return Err(AlterError::TimedOut(timeout));
    }
    // SAFETY: `event` is a live event from our queue.
    let error = unsafe { rd::rd_kafka_event_error(event.0) };
    if error != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        // SAFETY: as above; the string lives as long as the event.
        return Err(AlterError::Request(unsafe {
            text(rd::rd_kafka_event_error_string(event.0))
        }));
    }
    // SAFETY: the event is the IncrementalAlterConfigs result we asked for (null otherwise).
    let result = unsafe { rd::rd_kafka_event_IncrementalAlterConfigs_result(event.0) };
    if result.is_null() {
        return Err(AlterError::Request("an unexpected answer".into()));
    }
    let mut count = 0usize;
    // SAFETY: `result` lives as long as `event`; `count` receives the array's length.
    let answers =
        unsafe { rd::rd_kafka_IncrementalAlterConfigs_result_resources(result, &mut count) };
    let mut outcomes = Vec::with_capacity(count);
    for i in 0..count {
        // SAFETY: `answers` has `count` valid entries, alive as long as `event`.
        let outcome = unsafe {
            let answer = *answers.add(i);
            let name = text(rd::rd_kafka_ConfigResource_name(answer));
            match rd::rd_kafka_ConfigResource_error(answer) {
                rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => (name, Ok(())),
                code => {
                    let message = text(rd::rd_kafka_ConfigResource_error_string(answer));
                    let message = if message.is_empty() {
                        text(rd::rd_kafka_err2str(code))
                    } else {
                        message
                    };
                    (name, Err(message))
                }
            }
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// A C string owned by librdkafka, copied (empty when null).
///
/// # Safety
/// `pointer` is null or a valid NUL-terminated string.
unsafe fn text(pointer: *const c_char) -> String {
    if pointer.is_null() {
        return String::new();
    }
    // SAFETY: the caller's promise.
    unsafe { CStr::from_ptr(pointer) }
        .to_string_lossy()
        .into_owned()
}

struct Resources(Vec<*mut rd::rd_kafka_ConfigResource_t>);

impl Drop for Resources {
    fn drop(&mut self) {
        for resource in &self.0 {
            // SAFETY: each was made by rd_kafka_ConfigResource_new and is destroyed once.
            unsafe { rd::rd_kafka_ConfigResource_destroy(*resource) };
        }
    }
}

struct Options(*mut rd::rd_kafka_AdminOptions_t);

impl Drop for Options {
    fn drop(&mut self) {
        // SAFETY: made by rd_kafka_AdminOptions_new, destroyed once.
        unsafe { rd::rd_kafka_AdminOptions_destroy(self.0) };
    }
}

struct Queue(*mut rd::rd_kafka_queue_t);

impl Drop for Queue {
    fn drop(&mut self) {
        // SAFETY: made by rd_kafka_queue_new, destroyed once (after the event, declared later).
        unsafe { rd::rd_kafka_queue_destroy(self.0) };
    }
}

struct Event(*mut rd::rd_kafka_event_t);

impl Drop for Event {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: an event from rd_kafka_queue_poll, destroyed once.
            unsafe { rd::rd_kafka_event_destroy(self.0) };
        }
    }
}
