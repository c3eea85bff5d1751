using System.Reflection;
using Google.Protobuf;
using Google.Protobuf.Reflection;

namespace UblkCsi.GrpcHosting.Server;

/// <summary>
/// Binds the methods of a protobuf service to a plain implementation class by name and
/// signature. Every mismatch is reported when the service is added, never at call time.
/// </summary>
internal static class ServiceBinder
{
    public static List<MethodHandler> Bind(ServiceDescriptor service, object implementation, IReadOnlyCollection<string> unimplemented)
    {
        ArgumentNullException.ThrowIfNull(service);
        ArgumentNullException.ThrowIfNull(implementation);

        var type = implementation.GetType();
        foreach (var name in unimplemented)
        {
            if (service.FindMethodByName(name) is null)
            {
                throw new ArgumentException(
                    $"'{name}' is listed as unimplemented but {service.FullName} has no such method; its methods are: {string.Join(", ", service.Methods.Select(m => m.Name))}",
                    nameof(unimplemented));
            }
        }

        var handlers = new List<MethodHandler>(service.Methods.Count);
        foreach (var method in service.Methods)
        {
            var candidates = type.GetMethods(BindingFlags.Public | BindingFlags.Instance)
                .Where(m => m.Name == method.Name)
                .ToArray();

            if (unimplemented.Contains(method.Name))
            {
                if (candidates.Length > 0)
                {
                    throw new ArgumentException(
                        $"{type.Name}.{method.Name} exists but {service.FullName}/{method.Name} is listed as unimplemented; remove it from the list",
                        nameof(unimplemented));
                }

                handlers.Add(new UnimplementedMethodHandler(method));
                continue;
            }

            if (method.IsClientStreaming || method.IsServerStreaming)
            {
                throw new InvalidOperationException(
                    $"{service.FullName}/{method.Name} is a streaming method; this server serves unary methods only, so list it as unimplemented");
            }

            var requestType = method.InputType.ClrType ?? throw new InvalidOperationException(
                $"{method.InputType.FullName} has no generated C# type; services must come from generated code");
            var responseType = method.OutputType.ClrType ?? throw new InvalidOperationException(
                $"{method.OutputType.FullName} has no generated C# type; services must come from generated code");

            var match = candidates.FirstOrDefault(m => HasUnarySignature(m, requestType, responseType));
            if (match is null)
            {
                var expected = $"Task<{responseType.Name}> {method.Name}({requestType.Name} request, {nameof(ServerCallContext)} context) (or ValueTask<{responseType.Name}>)";
                throw new InvalidOperationException(candidates.Length == 0
                    ? $"{type.Name} does not implement {service.FullName}/{method.Name}: expected {expected}, or list it as unimplemented"
                    : $"{type.Name}.{method.Name} has the wrong signature: expected {expected}");
            }

            var handlerType = typeof(UnaryMethodHandler<,>).MakeGenericType(requestType, responseType);
            handlers.Add((MethodHandler)Activator.CreateInstance(handlerType, method, match, implementation)!);
        }

        return handlers;
    }

    private static bool HasUnarySignature(MethodInfo candidate, Type requestType, Type responseType)
    {
        var parameters = candidate.GetParameters();
        if (parameters.Length != 2 || parameters[0].ParameterType != requestType || parameters[1].ParameterType != typeof(ServerCallContext))
        {
            return false;
        }

        return candidate.ReturnType == typeof(Task<>).MakeGenericType(responseType)
            || candidate.ReturnType == typeof(ValueTask<>).MakeGenericType(responseType);
    }
}
