-- Grants applied after every migration (docker-compose service 'grants'). The writer part
-- is the output of 'mhst-tracker db grants mhst_writer'; tests/deploy/test_compose.py keeps it so.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE CREATE ON DATABASE mhst FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE mhst TO mhst_writer;
GRANT USAGE ON SCHEMA public TO mhst_writer;
GRANT SELECT, INSERT ON events, referrals, alerts, rejected_events TO mhst_writer;
GRANT UPDATE ON referrals, alerts TO mhst_writer;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO mhst_writer;
GRANT CONNECT ON DATABASE mhst TO mhst_reader;
GRANT USAGE ON SCHEMA public TO mhst_reader;
GRANT SELECT ON events, referrals, alerts, rejected_events TO mhst_reader;
