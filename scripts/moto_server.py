"""moto's server, with DynamoDB's item writes made atomic and SQS's message move tasks added.

Arguments are moto_server's (-H 127.0.0.1 -p PORT). Each patch exists so that the tests test
hookgate, not the emulator:

- DynamoDB item writes are serialised. moto's threaded server checks an UpdateItem condition
  and applies the update in separate steps, so two concurrent conditional writers can both
  win: exactly the race the idempotency store's claims exist to prevent. Real DynamoDB
  applies each conditional write atomically; serialising the item operations makes the
  emulator do the same.

- SQS StartMessageMoveTask and ListMessageMoveTasks are added. moto (5.2) does not implement
  them, and `hookgate dlq redrive` is built on them. This is an emulation of AWS's documented
  API (the SQS API Reference for both actions), not of moto's: it exists only because moto
  lacks the operations, so that hookgate's redrive is tested over the wire with the real SDK
  call. What it does, and where it is simpler than AWS:
    * SourceArn must name an existing queue, else ResourceNotFoundException; so must
      DestinationArn when given. Without DestinationArn each message goes back to the queue
      its redrive policy moved it from (recorded below); a message with no such source
      (sent straight to the queue) fails the task, as on AWS.
    * MaxNumberOfMessagesPerSecond is checked (1 to 500) and reported, but not needed: the
      task runs synchronously, inside the StartMessageMoveTask call. It moves every message
      visible in the source at that moment to the destination, keeping body and message
      attributes (the message gets a new id and receive count there, as a sent message
      does), and is recorded as COMPLETED (or FAILED, with the reason and the count moved
      before the failure). A task therefore never shows RUNNING.
    * ListMessageMoveTasks returns the most recent tasks for SourceArn, newest first
      (MaxResults 1 to 10, default 1). As on AWS, TaskHandle is listed only for RUNNING
      tasks, so never here.
    * AWS accepts as a source only a queue that is some queue's dead-letter queue; this
      emulation accepts any queue.
  To know a message's source queue, receives are wrapped so that a message moved by a
  redrive policy is marked with the queue it came from (AWS keeps this as the message's
  DeadLetterQueueSourceArn).
"""

import base64
import copy
import functools
import json
import threading
import time
import uuid

from moto.core.responses import ActionResult
from moto.dynamodb.models import DynamoDBBackend
from moto.sqs.exceptions import InvalidParameterValue, SQSException
from moto.sqs.models import SQSBackend, sqs_backends
from moto.sqs.responses import SQSResponse

# ---- DynamoDB: atomic item writes ----

_item_lock = threading.RLock()


def _serialised(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with _item_lock:
            return method(self, *args, **kwargs)

    return wrapper


for _name in (
    "put_item",
    "update_item",
    "delete_item",
    "get_item",
    "transact_write_items",
    "transact_get_items",
    "batch_write_item",
):
    if hasattr(DynamoDBBackend, _name):
        setattr(DynamoDBBackend, _name, _serialised(getattr(DynamoDBBackend, _name)))

# ---- SQS: message move tasks ----

_SOURCE_ARN = "_hookgate_dead_letter_queue_source_arn"
_move_lock = threading.RLock()


class ResourceNotFound(SQSException):
    def __init__(self, message):
        super().__init__("ResourceNotFoundException", message)


def _receive_marking_dead_letter_sources(original):
    """Marks each message a redrive policy moves during a receive with its source queue."""

    @functools.wraps(original)
    def receive_message(self, queue_name, *args, **kwargs):
        queue = self.get_queue(queue_name)
        dead_letter_queue = queue.dead_letter_queue
        before = list(queue._messages) if dead_letter_queue is not None else []
        result = original(self, queue_name, *args, **kwargs)
        if before:
            in_dead_letter_queue = {id(message) for message in dead_letter_queue._messages}
            for message in before:
                if id(message) in in_dead_letter_queue and not hasattr(message, _SOURCE_ARN):
                    setattr(message, _SOURCE_ARN, queue.queue_arn)
        return result

    return receive_message


SQSBackend.receive_message = _receive_marking_dead_letter_sources(SQSBackend.receive_message)


def _queue_from_arn(arn, parameter):
    """The queue an ARN names, with its backend; ResourceNotFoundException if there is none."""
    parts = arn.split(":") if isinstance(arn, str) else []
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs":
        raise InvalidParameterValue(f"Value {arn} for parameter {parameter} is invalid.")
    _, _, _, region, account_id, name = parts
    missing = ResourceNotFound(
        f"The resource that you specified for the {parameter} parameter doesn't exist."
    )
    try:
        backend = sqs_backends[account_id][region]
    except Exception:
        raise missing
    queue = backend.queues.get(name)
    if queue is None:
        raise missing
    return backend, queue


def _tasks(backend):
    """The move tasks recorded per source ARN, kept on the backend so a reset clears them."""
    if not hasattr(backend, "_hookgate_move_tasks"):
        backend._hookgate_move_tasks = {}
    return backend._hookgate_move_tasks


def _remove(queue, message):
    with queue._messages_lock:
        queue._messages = [kept for kept in queue._messages if kept is not message]
    queue.pending_messages.discard(message)
    queue.deleted_messages.update(handle for handle in message.all_receipt_handles if handle)


def _move(source, destination_arn):
    """Moves every message visible in `source` now; returns (moved, to_move, failure)."""
    messages = list(source.messages)
    moved = 0
    for message in messages:
        arn = destination_arn or getattr(message, _SOURCE_ARN, None)
        if arn is None:
            return moved, len(messages), (
                f"Message {message.id} has no source queue to return to: "
                "give a DestinationArn"
            )
        try:
            backend, destination = _queue_from_arn(arn, "DestinationArn")
            backend.send_message(
                destination.name,
                message.body,
                message_attributes=copy.deepcopy(message.message_attributes),
                deduplication_id=message.deduplication_id,
                group_id=message.group_id,
            )
        except SQSException as error:
            failure = f"Moving message {message.id} to {arn} failed: {error.message}"
            return moved, len(messages), failure
        _remove(source, message)
        moved += 1
    return moved, len(messages), None


def start_message_move_task(self):
    source_arn = self._get_param("SourceArn")
    destination_arn = self._get_param("DestinationArn")
    rate = self._get_param("MaxNumberOfMessagesPerSecond")
    if rate is not None and not 1 <= int(rate) <= 500:
        raise InvalidParameterValue(
            f"Value {rate} for parameter MaxNumberOfMessagesPerSecond is invalid. "
            "Reason: must be between 1 and 500."
        )
    backend, source = _queue_from_arn(source_arn, "SourceArn")
    if destination_arn:
        _queue_from_arn(destination_arn, "DestinationArn")
    task_handle = base64.b64encode(
        json.dumps({"taskId": str(uuid.uuid4()), "sourceArn": source_arn}).encode()
    ).decode()
    started = int(time.time() * 1000)
    with _move_lock:
        moved, to_move, failure = _move(source, destination_arn)
    task = {
        "TaskHandle": task_handle,
        "Status": "FAILED" if failure else "COMPLETED",
        "SourceArn": source_arn,
        "ApproximateNumberOfMessagesMoved": moved,
        "ApproximateNumberOfMessagesToMove": to_move,
        "StartedTimestamp": started,
    }
    if destination_arn:
        task["DestinationArn"] = destination_arn
    if rate is not None:
        task["MaxNumberOfMessagesPerSecond"] = int(rate)
    if failure:
        task["FailureReason"] = failure
    _tasks(backend).setdefault(source_arn, []).append(task)
    return ActionResult({"TaskHandle": task_handle})


def list_message_move_tasks(self):
    source_arn = self._get_param("SourceArn")
    max_results = self._get_param("MaxResults")
    max_results = 1 if max_results is None else int(max_results)
    if not 1 <= max_results <= 10:
        raise InvalidParameterValue(
            f"Value {max_results} for parameter MaxResults is invalid. "
            "Reason: must be between 1 and 10."
        )
    backend, _ = _queue_from_arn(source_arn, "SourceArn")
    newest_first = list(reversed(_tasks(backend).get(source_arn, [])))[:max_results]
    results = []
    for task in newest_first:
        listed = dict(task)
        if listed["Status"] != "RUNNING":
            del listed["TaskHandle"]
        results.append(listed)
    return ActionResult({"Results": results})


SQSResponse.start_message_move_task = start_message_move_task
SQSResponse.list_message_move_tasks = list_message_move_tasks

if __name__ == "__main__":
    from moto.server import main

    main()
