"""The store: kindling's state in SQLite (the embedded default) or PostgreSQL.

``Store`` owns the engine, its bounds and the schema's migrations; each component
declares its own tables on ``metadata`` and runs its statements in its own module:

    kindling.store.engine      Store, metadata, the settings table
    kindling.control.store     functions, function_meta, aliases, provisioned
    kindling.control.codetable code_zips (code shared by control nodes)
    kindling.control.event_invoke event_invoke_configs (async invocation configs)
    kindling.control.codesigning code_signing_configs, function_code_signing
    kindling.control.event_sources event_source_mappings (and their poller leases)
    kindling.events.checkpoints  event_source_positions (stream checkpoints)
    kindling.invoke.event_store  async_events (the async queue's)
    kindling.events.rule_store event_buses, event_rules, event_targets (EventBridge)
    kindling.events.schedule_store schedule_groups, schedules (EventBridge Scheduler)
    kindling.events.s3_notify  s3_notifications (bucket notification configurations)
    kindling.events.target_outbox event_target_deliveries (SQS, SNS, Kinesis targets)
    kindling.telemetry.audit   audit_events (the audit log of control-plane calls)
"""

from kindling.store.engine import Store, metadata

__all__ = ["Store", "metadata"]
