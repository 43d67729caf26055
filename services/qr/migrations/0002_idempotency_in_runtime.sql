-- Idempotency keys move to the runtime's table (idempotent_requests, one per schema). Keys
-- claimed before keep answering retries with their code; their requests were hashed another
-- way, so they carry no fingerprint and any retry under them gets the first result.
INSERT INTO idempotent_requests (operation, caller, key, fingerprint, result_id, created_at)
SELECT CASE operation WHEN 'rotate' THEN 'ttip.qr.v1.QrService/RotateQrCode' ELSE 'ttip.qr.v1.QrService/CreateQrCode' END,
       caller, idempotency_key, NULL, qr_code_id::text, created_at
  FROM idempotency_keys
ON CONFLICT DO NOTHING;
DROP TABLE idempotency_keys;
