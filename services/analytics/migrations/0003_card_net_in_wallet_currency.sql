-- A card tip's net is credited in the wallet's currency (KES for every worker who has a KES wallet),
-- but was added to the tip currency's rows: a USD row's net_minor held KES. Every row now holds one
-- currency's money (facts.ts: the net in its own currency's rows), so each such net moves to the KES
-- row of the same key. Which rows: a net in the tip's own currency never exceeds its tip (fees come
-- off, or the customer covers them), while a USD, EUR or GBP tip's KES net is about a hundred times
-- it; so a foreign row whose net exceeds its volume holds KES, and one whose net does not is left as
-- it is (a worker whose only wallet is in the tip's currency). What a replica of the version before
-- writes during the rollout stays where it put it; a replay from the upgrade's day rebuilds it.
INSERT INTO rollups (dim, id, sub, grain, bucket, method, result_code, currency, net_minor)
SELECT dim, id, sub, grain, bucket, method, result_code, 'KES', sum(net_minor)
  FROM rollups
 WHERE currency NOT IN ('KES', '') AND net_minor > amount_minor
 GROUP BY dim, id, sub, grain, bucket, method, result_code
    ON CONFLICT (dim, id, grain, bucket, sub, method, result_code, currency)
    DO UPDATE SET net_minor = rollups.net_minor + EXCLUDED.net_minor;

UPDATE rollups SET net_minor = 0 WHERE currency NOT IN ('KES', '') AND net_minor > amount_minor;
