#!/bin/sh
# Run once by the postgres image when the database is created: the login roles of the
# tracker. The owner (POSTGRES_USER) runs migrations; mhst_writer (workers, sink, CLI) reads
# and writes rows with no DDL rights; mhst_reader (Grafana) only reads.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE ROLE mhst_writer LOGIN PASSWORD '${MHST_WRITER_PASSWORD}';
CREATE ROLE mhst_reader LOGIN PASSWORD '${MHST_READER_PASSWORD}';
SQL
