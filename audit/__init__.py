"""Tamper-evident audit log: append, checkpoints, proofs, verify.

Records are canonical JSON hashed as RFC 6962 Merkle leaves; Ed25519-signed C2SP
checkpoints are stored in the database and exported to files outside it. This package
imports neither `service` nor `runner`: it takes an SQLAlchemy engine and plain data.

    from audit import AuditEvent, Actor, AuditSettings, SqlAuditLog
    log = SqlAuditLog.from_settings(engine, AuditSettings(), data_dir=..., embedded=True)
    log.start()                                  # writer + background checkpointer
    seq = await log.append_async(AuditEvent(...))  # returns once durable
    log.close()                                  # drain, final checkpoint
"""

from audit.config import AuditConfigError, AuditSettings
from audit.log import (
    AuditError,
    AuditLog,
    AuditReader,
    AuditSink,
    AuditUnavailableError,
    CheckpointInfo,
    InclusionProofBundle,
    NotCheckpointedError,
    NotFoundError,
    RecordFilter,
    create_audit_log,
    register_backend,
)
from audit.records import Actor, AuditEvent, AuditRecordError, StoredRecord
from audit.schema import create_schema, metadata
from audit.sql import SqlAuditLog
from audit.verify import Kind, Status, VerifyResult, verify_inclusion_bundle, verify_log

__all__ = [
    "Actor",
    "AuditConfigError",
    "AuditError",
    "AuditEvent",
    "AuditLog",
    "AuditReader",
    "AuditRecordError",
    "AuditSettings",
    "AuditSink",
    "AuditUnavailableError",
    "CheckpointInfo",
    "InclusionProofBundle",
    "Kind",
    "NotCheckpointedError",
    "NotFoundError",
    "RecordFilter",
    "SqlAuditLog",
    "Status",
    "StoredRecord",
    "VerifyResult",
    "create_audit_log",
    "create_schema",
    "metadata",
    "register_backend",
    "verify_inclusion_bundle",
    "verify_log",
]
