// Screens and flows under jest-expo against a fake transport (Connect's router
// transport serving the real generated service descriptors), and the same screens
// against a running platform (src/__gateway__, started by test/gateway.test.ts, which
// passes its addresses in the environment). One config for both: jest keys its
// transform cache by the config, so the second run reuses the first one's babel output.
const path = require("node:path");
const root = path.resolve(__dirname, "../..");

module.exports = {
  preset: "jest-expo",
  testMatch: ["<rootDir>/src/**/*.spec.ts?(x)", "<rootDir>/src/**/*.gateway.tsx"],
  // In the checkout (a clean clone starts cold), not the machine's shared temporary folder.
  cacheDirectory: path.join(__dirname, "node_modules/.cache/jest"),
  setupFiles: ["<rootDir>/jest.setup.js"],
  // Renders and polls on two busy cores; compiling React Native's components is paid as the
  // file loads (src/testing/render-app.tsx), not by the first test.
  testTimeout: 30_000,
  moduleNameMapper: {
    "^@ttip/proto/(.*)\\.js$": path.join(root, "proto/gen/$1.ts"),
    "^@ttip/web-lib/(.*)$": path.join(root, "apps/web/src/lib/$1"),
    // The generated code's relative imports name the .ts files as ".js".
    "^(\\.{1,2}/.*)\\.js$": "$1",
  },
  // Generated and shared code outside this folder resolves its packages from here.
  modulePaths: ["<rootDir>/node_modules"],
  transformIgnorePatterns: [
    "node_modules/(?!((jest-)?react-native|@react-native(-community)?|expo(nent)?|@expo(nent)?/.*|@expo-google-fonts/.*|react-navigation|@react-navigation/.*|@bufbuild/.*|@connectrpc/.*|@noble/.*))",
  ],
};
