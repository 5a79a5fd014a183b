"""Pure logic of the sensor: pod selection and desired-vs-actual mirror state."""
