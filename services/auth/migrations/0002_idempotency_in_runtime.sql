-- Partner keys' idempotency moves to the runtime's table (idempotent_requests). Keys issued
-- before keep answering retries with their key; their requests were hashed another way, so
-- they carry no fingerprint. The columns on partner_api_keys stay as a record.
INSERT INTO idempotent_requests (operation, caller, key, fingerprint, result_id, created_at)
SELECT 'ttip.auth.v1.AuthAdminService/IssuePartnerApiKey', '', idempotency_key, NULL, key_id::text, created_at
  FROM partner_api_keys
ON CONFLICT DO NOTHING;
