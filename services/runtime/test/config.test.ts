import assert from "node:assert/strict";
import { test } from "node:test";
import { z } from "zod";
import { ConfigError, env, loadConfig } from "../src/config.js";

const shape = {
  DATABASE_URL: env.url(["postgres", "postgresql"]),
  PORT: env.port(8080),
  EMBEDDED: env.flag(false),
  MODE: z.enum(["cluster", "embedded"]).default("cluster"),
};

test("valid environment parses into typed values with defaults", () => {
  const cfg = loadConfig(shape, { DATABASE_URL: "postgres://u@h:5432/db", EMBEDDED: "true" });
  assert.equal(cfg.DATABASE_URL, "postgres://u@h:5432/db");
  assert.equal(cfg.PORT, 8080);
  assert.equal(cfg.EMBEDDED, true);
  assert.equal(cfg.MODE, "cluster");
});

test("every problem is reported at once, naming the variable", () => {
  let error: unknown;
  try {
    loadConfig(shape, { PORT: "99999", EMBEDDED: "maybe", MODE: "cloud" });
  } catch (err) {
    error = err;
  }
  assert.ok(error instanceof ConfigError);
  assert.equal(error.problems.length, 4);
  assert.match(error.message, /DATABASE_URL: is required/);
  assert.match(error.message, /PORT: .*65535/);
  assert.match(error.message, /EMBEDDED: must be true or false/);
  assert.match(error.message, /MODE: /);
});

test("a URL with the wrong scheme is refused", () => {
  assert.throws(() => loadConfig(shape, { DATABASE_URL: "mysql://h/db" }), /DATABASE_URL: must start with postgres:\/\/ or postgresql:\/\//);
});
