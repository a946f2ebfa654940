# EV side: session state machines, the vehicle-controller interface and a simulated vehicle.
