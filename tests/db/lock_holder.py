"""A helper process for the lock tests: hold SQLite's write lock on a file for some seconds.

Usage: python lock_holder.py PATH SECONDS. Prints "locked" once the lock is held.
"""

import sqlite3
import sys
import time


def main(path: str, seconds: float) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        print("locked", flush=True)
        time.sleep(seconds)  # the scenario itself: a writer that keeps the lock this long
        connection.execute("COMMIT")
    finally:
        connection.close()


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
