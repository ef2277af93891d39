//! SQS adapter: the queue an EventBridge rule sends GuardDuty finding events to. Long
//! polls (ReceiveMessage, at most 10 messages and 20 s a call) and deletes what was
//! handled (DeleteMessageBatch, at most 10 a call).

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;

use super::aws_error;
use crate::events::{EventQueue, Message};
use crate::ports::AwsError;

/// SQS's limit for messages per receive and entries per batch delete.
const BATCH: usize = 10;
/// SQS's longest long poll.
const MAX_WAIT_SECONDS: i32 = 20;

#[derive(Debug, Clone)]
pub struct Sqs {
    client: Client,
    queue_url: String,
}

impl Sqs {
    pub fn new(client: Client, queue_url: &str) -> Sqs {
        Sqs {
            client,
            queue_url: queue_url.to_string(),
        }
    }
}

/// The region in a queue URL (`https://sqs.<region>.amazonaws.com/<account>/<name>`),
/// when it names one.
pub fn queue_region(queue_url: &str) -> Option<String> {
    let host = queue_url.split("://").nth(1)?.split('/').next()?;
    let mut labels = host.split('.');
    match (labels.next(), labels.next()) {
        (Some("sqs"), Some(region)) if !region.is_empty() => Some(region.to_string()),
        _ => None,
    }
}

impl EventQueue for Sqs {
    async fn receive(&self, wait_seconds: u32) -> Result<Vec<Message>, AwsError> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(BATCH as i32)
            .wait_time_seconds(
                i32::try_from(wait_seconds)
                    .unwrap_or(MAX_WAIT_SECONDS)
                    .min(MAX_WAIT_SECONDS),
            )
            .send()
            .await
            .map_err(aws_error)?;
        Ok(output
            .messages()
            .iter()
            .filter_map(|m| {
                Some(Message {
                    id: m.message_id()?.to_string(),
                    receipt: m.receipt_handle()?.to_string(),
                    body: m.body().unwrap_or_default().to_string(),
                })
            })
            .collect())
    }

    async fn delete(&self, receipts: &[String]) -> Result<(), AwsError> {
        for batch in receipts.chunks(BATCH) {
            let entries: Vec<DeleteMessageBatchRequestEntry> = batch
                .iter()
                .enumerate()
                .filter_map(|(i, receipt)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .build()
                        .ok()
                })
                .collect();
            let output = self
                .client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(aws_error)?;
            if let Some(failed) = output.failed().first() {
                return Err(AwsError {
                    code: Some(failed.code().to_string()),
                    message: failed.message().unwrap_or("not deleted").to_string(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_is_read_from_a_queue_url() {
        assert_eq!(
            queue_region("https://sqs.eu-west-1.amazonaws.com/123456789012/guardduty").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(queue_region("http://127.0.0.1:5000/123456789012/q"), None);
        assert_eq!(queue_region("not a url"), None);
    }
}
