-- Protobuf fields encoded in SQL, for events whose fields are known only in the
-- statement that writes their state: a failure callback's one statement finds
-- its tip by the callback's token, so the tip_failed event's tip fields (id,
-- worker, amount...) are appended there to what the service encoded (tips.ts,
-- storeAndFailStk). Protobuf's parsers read fields in any order and merge an
-- embedded message that occurs twice, so the bytes are the same message. The
-- field numbers come from the service's descriptors, never from here.

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

-- A length-delimited field (wire type 2: a string's UTF-8, or an embedded
-- message's bytes). Nothing for NULL or empty, as proto3 leaves defaults out.
-- Names are schema-qualified: the function runs with the caller's search_path.
CREATE FUNCTION pb_bytes_field(field integer, value bytea) RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN value IS NULL OR octet_length(value) = 0 THEN '\x'::bytea
              ELSE payment.pb_varint((field::bigint << 3) | 2) || payment.pb_varint(octet_length(value)) || value END
$$;

CREATE FUNCTION pb_string_field(field integer, value text) RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT payment.pb_bytes_field(field, convert_to(value, 'UTF8'))
$$;

-- A varint field (wire type 0): an int64 or an enum. Nothing for NULL or 0.
CREATE FUNCTION pb_int_field(field integer, value bigint) RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN value IS NULL OR value = 0 THEN '\x'::bytea ELSE payment.pb_varint(field::bigint << 3) || payment.pb_varint(value) END
$$;
