// The server and these tests use Linux facilities (unix sockets, file modes, signals).
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
