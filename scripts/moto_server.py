"""moto's server, with DynamoDB's item writes made atomic.

moto's threaded server checks an UpdateItem condition and applies the update in separate
steps, so two concurrent conditional writers can both win: exactly the race the idempotency
store's claims exist to prevent. Real DynamoDB applies each conditional write atomically;
serialising the item operations makes the emulator do the same, so concurrency tests test
hookgate, not the emulator. Arguments are moto_server's (-H 127.0.0.1 -p PORT).
"""

import functools
import threading

from moto.dynamodb.models import DynamoDBBackend

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

if __name__ == "__main__":
    from moto.server import main

    main()
