import { registerRootComponent } from "expo";
import { PhoneApp } from "./src/PhoneApp";
registerRootComponent(PhoneApp);
