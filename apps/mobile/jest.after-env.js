// After the test framework is set up (the testing library extends expect as it loads): findBy…/waitFor wait up to
// 10 s, not the library's 1 s. A sign-in's answer and the next screen's first render share two busy cores with other
// test files under make test; a wait that passes returns at once either way.
require("@testing-library/react-native").configure({ asyncUtilTimeout: 10_000 });
