-- movement_event_tail as one expression that the planner inlines into the
-- posting statement. As 0003 wrote it (a SELECT with FROM) it could not be:
-- every posting parsed and planned its body again (measured: about a third of
-- the statement's server CPU). STABLE, not IMMUTABLE, because convert_to is;
-- not STRICT, so inlining needs no proof (a NULL in gives NULL out anyway).
CREATE OR REPLACE FUNCTION movement_event_tail(owner_id text, balance_minor bigint, currency text) RETURNS bytea
LANGUAGE sql STABLE CALLED ON NULL INPUT PARALLEL SAFE AS $$
  SELECT '\x1a'::bytea || wallet.pb_varint(octet_length(convert_to(owner_id, 'UTF8'))) || convert_to(owner_id, 'UTF8')
      || '\x32'::bytea || wallet.pb_varint(2 + octet_length(wallet.pb_varint(balance_minor)) + octet_length(wallet.pb_varint(octet_length(convert_to(currency, 'UTF8')))) + octet_length(convert_to(currency, 'UTF8')))
      || '\x08'::bytea || wallet.pb_varint(balance_minor)
      || '\x12'::bytea || wallet.pb_varint(octet_length(convert_to(currency, 'UTF8'))) || convert_to(currency, 'UTF8')
$$;
