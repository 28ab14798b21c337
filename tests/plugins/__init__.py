"""Third-party-style plugin packages the tests install (see flowrun_testplugin)."""
