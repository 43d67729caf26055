// The same screens against a running platform (started by test/gateway.test.ts,
// which passes its addresses in the environment).
const base = require("./jest.config.js");

module.exports = { ...base, testMatch: ["<rootDir>/src/**/*.gateway.tsx"], testTimeout: 120_000 };
