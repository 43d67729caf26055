-- A posting is one statement (ledger.ts, postEntry): the owners' balances are
-- known only under their row locks, inside it, so the balance_after of their
-- wallet.credited/debited events is encoded there. The service encodes every
-- other field; these append fields 3 (owner_id) and 6 (balance_after, a
-- ttip.common.v1.Money). Protobuf's parsers read fields in any order, so the
-- bytes are the same message. ledger.ts checks those field numbers at start.

-- A protobuf varint: the int64's two's-complement 64 bits, 7 a byte, low
-- first, the high bit saying more follow (a negative number takes 10 bytes).
CREATE FUNCTION pb_varint(v bigint) RETURNS bytea LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
  encoded bytea := '';
  low integer;
BEGIN
  FOR i IN 1..9 LOOP
    low := (v & 127)::integer;
    -- Arithmetic shift: a negative v never reaches 0 and ends in the tenth byte.
    v := v >> 7;
    IF v = 0 THEN
      RETURN encoded || set_byte('\x00'::bytea, 0, low);
    END IF;
    encoded := encoded || set_byte('\x00'::bytea, 0, low | 128);
  END LOOP;
  RETURN encoded || set_byte('\x00'::bytea, 0, (v & 1)::integer);
END $$;

-- Names are schema-qualified: the function runs with the caller's search_path.
CREATE FUNCTION movement_event_tail(owner_id text, balance_minor bigint, currency text) RETURNS bytea LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT '\x1a'::bytea || wallet.pb_varint(octet_length(o)) || o || '\x32'::bytea || wallet.pb_varint(octet_length(m)) || m
    FROM (SELECT convert_to(owner_id, 'UTF8') AS o,
                 '\x08'::bytea || wallet.pb_varint(balance_minor) || '\x12'::bytea || wallet.pb_varint(octet_length(currency)) || convert_to(currency, 'UTF8') AS m) f
$$;
