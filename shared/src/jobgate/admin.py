"""`jobgate-admin migrate | topology | definitions`: operator commands of the shared library.

Named apart from `jobgate`, the command line of the client package, so that a user's
`jobgate` never touches a database or a broker."""

from __future__ import annotations

import argparse
import json
import sys

import pika

from jobgate.broker import declare_topology, definitions
from jobgate.config import Settings
from jobgate.migrate import apply_migrations


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jobgate-admin")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply pending database migrations (DATABASE_URL)")
    sub.add_parser("topology", help="declare exchanges and queues on the broker (AMQP_URL)")
    defs = sub.add_parser("definitions", help="print the topology as a RabbitMQ definitions file")
    defs.add_argument("--vhost", default="/")
    defs.add_argument(
        "--into",
        metavar="FILE",
        help="update the topology of an existing definitions file (users and permissions kept)",
    )
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if args.command == "migrate":
        applied = apply_migrations(settings.database_url)
        print(f"applied: {', '.join(applied)}" if applied else "database is up to date")
    elif args.command == "topology":
        connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
        declare_topology(connection.channel(), queue_type=settings.job_queue_type)
        connection.close()
        print("topology declared")
    else:
        doc = definitions(queue_type=settings.job_queue_type, vhost=args.vhost)
        if args.into:
            with open(args.into) as f:
                existing = json.load(f)
            for section in ("exchanges", "queues", "bindings"):
                existing[section] = doc[section]
            with open(args.into, "w") as f:
                f.write(json.dumps(existing, indent=2) + "\n")
            print(f"topology of {args.into} updated")
        else:
            json.dump(doc, sys.stdout, indent=2)
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
