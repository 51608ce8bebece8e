//! Acknowledgements: the scorer's producer and its context. Each delivery report is counted into
//! its batch's `BatchAcks` (which `delivery` awaits), and an acknowledged prediction's reply copy
//! is sent from here (`reply_copies`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use tokio::sync::Notify;

use super::reply_copies::{send_reply, ReplyProducer};

/// The scorer's producer: deliveries are counted per batch (`BatchAcks`) rather than awaited
/// as one future per record, which cost about a third of the delivery path.
pub(super) type AckingProducer = ThreadedProducer<AckCounter>;

/// One delivery attempt of a batch: how many records are still unacknowledged, and which failed.
pub(super) struct BatchAcks {
    /// Starts at one, for the enqueueing itself, so that early acknowledgements cannot bring it to
    /// zero before every record is handed over (`wait_after_enqueueing`).
    pub(super) outstanding: AtomicUsize,
    failed: Mutex<Vec<(usize, KafkaError)>>,
    settled: Notify,
}

impl BatchAcks {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(BatchAcks {
            outstanding: AtomicUsize::new(1),
            failed: Mutex::default(),
            settled: Notify::new(),
        })
    }

    pub(super) fn settle_one(&self) {
        if self.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.settled.notify_one();
        }
    }

    /// Ends the enqueueing and waits until the broker has acknowledged (or refused) every record
    /// enqueued; returns the refused ones by index.
    pub(super) async fn wait_after_enqueueing(&self) -> Vec<(usize, KafkaError)> {
        self.settle_one();
        self.settled.notified().await;
        std::mem::take(&mut *self.failed.lock().expect("acks"))
    }
}

/// One produced record's delivery report: which batch and record it is, and where its reply goes.
pub(super) struct Delivery {
    pub(super) acks: Arc<BatchAcks>,
    pub(super) index: usize,
    pub(super) reply_to: Option<Arc<str>>,
}

/// Routes each delivery report to its batch, and sends the reply of each acknowledged prediction.
pub(super) struct AckCounter {
    pub(super) replies: ReplyProducer,
}

impl ClientContext for AckCounter {}

impl ProducerContext for AckCounter {
    type DeliveryOpaque = Box<Delivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: Self::DeliveryOpaque) {
        let Delivery {
            acks,
            index,
            reply_to,
        } = *opaque;
        match result {
            Ok(message) => {
                if let Some(topic) = reply_to {
                    send_reply(&self.replies, &topic, message);
                }
            }
            Err((e, _)) => acks.failed.lock().expect("acks").push((index, e.clone())),
        }
        acks.settle_one();
    }
}
