"""thingsray: an actor-model IoT platform on Ray that speaks ThingsBoard's wire protocols."""

__version__ = "0.1.0"
