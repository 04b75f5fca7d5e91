// Flags -> configuration -> ProxyServer; the command line lives in CacheProxy (ProxyCommand).
import CacheProxy

ProxyCommand.main()
