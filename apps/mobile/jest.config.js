// Screens and flows under jest-expo against a fake transport (Connect's router
// transport serving the real generated service descriptors), and the same screens
// against a running platform (src/__gateway__, started by test/gateway.test.ts, which
// passes its addresses in the environment). One config for both: jest keys its
// transform cache by the config, so the second run reuses the first one's babel output.
const path = require("node:path");
const { resolveBabelOptions } = require("jest-expo/src/resolveBabelOptions");
const root = path.resolve(__dirname, "../..");

module.exports = {
  preset: "jest-expo",
  testMatch: ["<rootDir>/src/**/*.spec.ts?(x)", "<rootDir>/src/**/*.gateway.tsx"],
  // jest's own cache, in the checkout (its keys name absolute paths); jest.transform.js adds
  // babel's output keyed by paths inside the repo, which a new clone on the machine reuses.
  cacheDirectory: path.join(__dirname, "node_modules/.cache/jest"),
  setupFiles: ["<rootDir>/jest.setup.js"],
  setupFilesAfterEnv: ["<rootDir>/jest.after-env.js"],
  // jest-expo's own transform (babel-jest with these options), through that shared cache.
  transform: { "\\.[jt]sx?$": ["<rootDir>/jest.transform.js", resolveBabelOptions(__dirname)] },
  // Renders and polls on two busy cores; compiling React Native's components is paid as the
  // file loads (src/testing/render-app.tsx), not by the first test.
  testTimeout: 30_000,
  moduleNameMapper: {
    "^@ttip/proto/(.*)\\.js$": path.join(root, "proto/gen/$1.ts"),
    "^@ttip/web-lib/(.*)$": path.join(root, "apps/web/src/lib/$1"),
    "^@ttip/runtime/mpesa-limits$": path.join(root, "services/runtime/src/mpesa-limits.ts"),
    // The generated code's relative imports name the .ts files as ".js".
    "^(\\.{1,2}/.*)\\.js$": "$1",
  },
  // Generated and shared code outside this folder resolves its packages from here.
  modulePaths: ["<rootDir>/node_modules"],
  transformIgnorePatterns: [
    "node_modules/(?!((jest-)?react-native|@react-native(-community)?|expo(nent)?|@expo(nent)?/.*|@expo-google-fonts/.*|react-navigation|@react-navigation/.*|@bufbuild/.*|@connectrpc/.*|@noble/.*))",
  ],
};
