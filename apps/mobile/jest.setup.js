// The safe-area provider measures the native screen: its own mock gives a phone's insets.
jest.mock("react-native-safe-area-context", () => require("react-native-safe-area-context/jest/mock").default);
