-- Grants applied after every migration (docker-compose service 'grants'): the output of
-- 'mhst-tracker db grants mhst_writer' then of 'mhst-tracker db grants mhst_reader --reader';
-- tests/deploy/test_compose.py keeps it so.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE CREATE ON DATABASE mhst FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE mhst TO mhst_writer;
GRANT USAGE ON SCHEMA public TO mhst_writer;
GRANT SELECT, INSERT ON events, referrals, alerts, deliveries, digests TO mhst_writer;
REVOKE ALL ON rejected_events FROM mhst_writer;
GRANT INSERT, SELECT (reject_key) ON rejected_events TO mhst_writer;
GRANT UPDATE ON referrals, alerts, deliveries, digests TO mhst_writer;
GRANT SELECT, INSERT, UPDATE ON api_tokens TO mhst_writer;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO mhst_writer;
GRANT CONNECT ON DATABASE mhst TO mhst_reader;
GRANT USAGE ON SCHEMA public TO mhst_reader;
GRANT SELECT ON events, referrals, alerts, deliveries, digests TO mhst_reader;
REVOKE ALL ON rejected_events FROM mhst_reader;
GRANT SELECT (reason, rejected_at) ON rejected_events TO mhst_reader;
