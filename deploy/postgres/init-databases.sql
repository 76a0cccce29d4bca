-- Runs once, when the compose stack's PostgreSQL starts on an empty data volume
-- (mounted into /docker-entrypoint-initdb.d by docker-compose.yml).
-- One role and one database per service, so no service can read or write another's tables.
-- The passwords are for the local compose stack only; production uses managed PostgreSQL
-- (deploy/k8s/README.md).
CREATE ROLE registry LOGIN PASSWORD 'registry-local';
CREATE DATABASE registry OWNER registry;

CREATE ROLE scoring LOGIN PASSWORD 'scoring-local';
CREATE DATABASE scoring OWNER scoring;

CREATE ROLE monitoring LOGIN PASSWORD 'monitoring-local';
CREATE DATABASE monitoring OWNER monitoring;

CREATE ROLE audit LOGIN PASSWORD 'audit-local';
CREATE DATABASE audit OWNER audit;

-- Temporal keeps its history and its visibility (search attributes) in two databases.
CREATE ROLE temporal LOGIN PASSWORD 'temporal-local';
CREATE DATABASE temporal OWNER temporal;
CREATE DATABASE temporal_visibility OWNER temporal;

REVOKE CONNECT ON DATABASE registry, scoring, monitoring, audit, temporal, temporal_visibility FROM PUBLIC;
